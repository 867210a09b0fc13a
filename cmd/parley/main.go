// Command parley is the Parley server and its tools.
//
//	parley serve [flags]        run a server: single node, or a cluster node with -cluster-* (see -h)
//	parley backup -data DIR -out DIR   checkpoint the store of a stopped server
//	parley cert ca|node [flags]  make the cluster CA and node certificates
//	parley chat -addr HOST:PORT  interactive terminal client
//	parley send-file -user U -password P -conv CONV PATH   upload a file into a conversation
//	parley get-file -user U -password P [-o PATH] FILEID   download a file by id
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		fixedStackStart()
		err = serve(os.Args[2:])
	case "backup":
		err = backup(os.Args[2:])
	case "cert":
		err = cert(os.Args[2:])
	case "chat":
		err = chat(os.Args[2:])
	case "send-file":
		err = sendFile(os.Args[2:])
	case "get-file":
		err = getFile(os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: parley <command> [flags]
  serve    run a single-node server (data in ./data, listens on 127.0.0.1:8080)
  backup   write a consistent checkpoint of a data directory
  cert     cluster PKI: cert ca -dir D; cert node -dir D -id N -hosts IP,...
  chat     interactive terminal client
  send-file  upload a file into a conversation (resumable, with a progress bar)
  get-file   download a file by id: pieces from the server and peers (P2SP), sha256-checked`)
}
