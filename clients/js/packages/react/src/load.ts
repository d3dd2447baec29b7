// A thread's timeline from the server: its event log over REST (paged), with the stored
// messages standing in for events pruned from the log.

import {
  applyEvents,
  emptyTimeline,
  timelineFromMessages,
  type RestClient,
  type Timeline,
} from "@runwire/client";

/** Pages of 500 events read at most: more than the default retention (1000 events). */
const MAX_EVENT_PAGES = 4;

/** The thread as the server has it now (throws the REST client's errors). */
export async function serverTimeline(rest: RestClient, threadId: string): Promise<Timeline> {
  let base = emptyTimeline(threadId);
  let after = 0;
  for (let i = 0; i < MAX_EVENT_PAGES; i += 1) {
    const page = await rest.events(threadId, { afterSeq: after, limit: 500 });
    if (i === 0 && page.first_retained_seq !== null && page.first_retained_seq > 1) {
      // Older events were pruned: the stored messages stand in for them (those whose
      // events are still in the log come from the events, in their place).
      const inLog = new Set(page.items.map((e) => {
        const p: Record<string, unknown> = e.payload;
        return String(p.message_id ?? "");
      }));
      const msgs = await rest.messages(threadId, { limit: 100 });
      base = timelineFromMessages(threadId, msgs.items.filter((m) => !inLog.has(m.message_id)),
                                  page.first_retained_seq - 1);
    }
    base = applyEvents(base, page.items);
    const last = page.items.at(-1);
    if (!page.next_cursor || !last) break;
    after = last.seq;
  }
  return base;
}
