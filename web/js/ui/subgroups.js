// The "To:" picker of a group's composer: once a channel import created
// sub-groups (docs/protocol.md §17.4), a message can go to the whole group
// or to one sub-group. Members outside it get a MESSAGE_KIND_HIDDEN
// placeholder at the same seq, which the log shows as a faint line.

import { ConvKind } from '../protocol.js';
import { $, h } from './dom.js';

export class SubgroupPicker {
  constructor() {
    this.el = h('select', { id: 'compose-target', class: 'compose-target', 'aria-label': 'Send to', title: 'Send to the whole group or one sub-group', hidden: true });
    $('compose').before(this.el);
    this.key = '';
  }

  // update shows the picker for a group with sub-groups, keeping the choice.
  update(c) {
    const subgroups = c && c.kind === ConvKind.GROUP && !c.left ? c.subgroups || [] : [];
    const key = subgroups.join('\n');
    if (key !== this.key) {
      const keep = this.el.value;
      this.el.replaceChildren(h('option', { value: '', text: 'Everyone' }), ...subgroups.map((s) => h('option', { value: s, text: `Only ${s}` })));
      this.el.value = subgroups.includes(keep) ? keep : '';
      this.key = key;
    }
    this.el.hidden = subgroups.length === 0;
  }

  reset() {
    this.el.value = '';
  }

  value() {
    return this.el.hidden ? '' : this.el.value;
  }
}
