package main

import "errors"

func chat(args []string) error { return errors.New("chat: not built yet") }
