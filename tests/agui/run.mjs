// Drives runwire's POST /ag-ui with the official AG-UI client (@ag-ui/client's HttpAgent,
// which verifies the event sequence and applies it to its message list).
// usage: node run.mjs <url> <token> <threadId> <messageId> <text> [<resume entries as JSON>]
// prints one JSON line: {ok, events: [types...], messages, result, error?}
import { HttpAgent } from "@ag-ui/client";

const [url, token, threadId, messageId, text, resume] = process.argv.slice(2);
const agent = new HttpAgent({
  url,
  headers: { Authorization: `Bearer ${token}` },
  threadId,
  initialMessages: [{ id: messageId, role: "user", content: text }],
});
const events = [];
const out = { ok: false, events, messages: [], result: null, error: null, runError: null,
  outcome: null, interrupts: [] };
try {
  const result = await agent.runAgent(
    resume ? { runId: `resume-${messageId}`, resume: JSON.parse(resume) } : { runId: `run-${messageId}` },
    {
      onEvent({ event }) {
        events.push(event.type);
      },
      onRunFinishedEvent(params) {
        out.outcome = params.outcome;
        out.interrupts = params.outcome === "interrupt" ? params.interrupts : [];
      },
      onRunErrorEvent({ event }) {
        out.runError = { code: event.code ?? null, message: event.message };
      },
    },
  );
  out.ok = true;
  out.result = result.result ?? null;
  out.messages = agent.messages;
} catch (error) {
  out.error = String(error && error.message ? error.message : error);
}
console.log(JSON.stringify(out));
