import type { ApprovalDecision, ApprovalItem } from "@runwire/client";
import { useRunwireStore } from "@runwire/react";
import { useEffect, useId, useState, type ReactNode } from "react";

/** Sends a decision; false when not connected. */
export type OnApprove = (item: ApprovalItem, decision: ApprovalDecision) => boolean;

function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? String(value);
}

/**
 * A tool call that waits for the user's approval (SPEC 7): the tool, its arguments (editable
 * JSON), Approve / Deny with an optional reason. Every open tab shows it; once decided here
 * or elsewhere (`approval_resolved`) it turns into the decision everywhere. The server's
 * refusal of this decision (`conflict`, `validation_error` for edited arguments) is shown on
 * the card, which stays open.
 */
export function Approval({ item, onApprove, live }: {
  item: ApprovalItem; onApprove: OnApprove; live: boolean;
}): ReactNode {
  const store = useRunwireStore();
  const [text, setText] = useState(() => pretty(item.args));
  const [reason, setReason] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [sent, setSent] = useState(false);
  const ids = useId();
  useEffect(() => store.client.on("frame", (frame) => {
    if (frame.type !== "error" || frame.payload.request_id !== `approve:${item.id}`) return;
    setProblem(frame.payload.message);
    setSent(false);
  }), [store, item.id]);

  if (item.status !== "pending") {
    const approved = item.status === "approved";
    const edited = approved && item.approvedArgs !== null && pretty(item.approvedArgs) !== pretty(item.args);
    return (
      <div className={`note approval ${approved ? "ok" : "error"}`} data-testid="approval" data-status={item.status}
           data-tool-call-id={item.id}>
        {approved ? "✓ Approved" : "✗ Denied"} <b>{item.toolName}</b>
        {edited && " with edited arguments"}
        {!approved && item.reason && <> — {item.reason}</>}
      </div>
    );
  }

  const decide = (decision: ApprovalDecision): void => {
    setProblem(null);
    if (!onApprove(item, decision)) {
      setProblem("Not connected: decide again once the connection is back.");
      return;
    }
    setSent(true);
  };
  const approve = (): void => {
    let args: unknown;
    try {
      args = JSON.parse(text);
    } catch {
      setProblem("The arguments are not valid JSON.");
      return;
    }
    if (typeof args !== "object" || args === null || Array.isArray(args)) {
      setProblem("The arguments must be a JSON object.");
      return;
    }
    const changed = pretty(args) !== pretty(item.args);
    decide(changed ? { approved: true, args: args as Record<string, unknown> } : { approved: true });
  };
  const expires = item.expiresAt ? new Date(item.expiresAt) : null;
  return (
    <section className="approval-card" data-testid="approval" data-status="pending" data-tool-call-id={item.id}
             aria-label={`Approval needed: ${item.toolName}`}>
      <div className="title">
        <b>{item.agentName || "The agent"}</b> wants to call <b>{item.toolName}</b>
      </div>
      <label htmlFor={`${ids}-args`} className="label">arguments (JSON, editable)</label>
      <textarea id={`${ids}-args`} data-testid="approval-args" value={text} spellCheck={false}
                rows={Math.min(12, text.split("\n").length + 1)}
                onChange={(e) => setText(e.target.value)} disabled={sent} />
      <label htmlFor={`${ids}-reason`} className="label">reason (optional, sent with a denial)</label>
      <input id={`${ids}-reason`} data-testid="approval-reason" value={reason} maxLength={1000}
             onChange={(e) => setReason(e.target.value)} disabled={sent} />
      <div className="buttons">
        <button type="button" className="new" data-testid="approve" disabled={sent || !live} onClick={approve}>
          Approve
        </button>
        <button type="button" data-testid="deny" disabled={sent || !live}
                onClick={() => decide(reason.trim() ? { approved: false, reason: reason.trim() } : { approved: false })}>
          Deny
        </button>
        {sent && <span className="tag">sending…</span>}
        {expires && !Number.isNaN(expires.getTime()) && (
          <span className="expires">denied automatically at {expires.toLocaleString()}</span>
        )}
      </div>
      {problem && <p className="tag error" role="alert" data-testid="approval-problem">{problem}</p>}
    </section>
  );
}
