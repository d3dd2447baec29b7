import { describe, expect, it } from "vitest";
import { parseFrame } from "../src/frames.ts";

describe("parseFrame", () => {
  it("narrows thread events and control frames by type", () => {
    const f = parseFrame(JSON.stringify({
      type: "tool_executing", thread_id: "T", seq: 3, run_id: "R",
      payload: { agent_name: "a", tool_name: "calculator", tool_args: { expression: "1+1" }, tool_call_id: "c" },
    }));
    expect(f?.type === "tool_executing" && f.payload.tool_name).toBe("calculator");
    const ack = parseFrame(JSON.stringify({ type: "message_ack", payload: { message_id: "m", thread_id: "T", run_id: "R" } }));
    expect(ack?.type === "message_ack" && ack.payload.run_id).toBe("R");
  });

  it("keeps the seq of a thread event of an unknown type, drops unknown control frames and junk", () => {
    const other = parseFrame(JSON.stringify({ type: "agent_dreaming", thread_id: "T", seq: 9, payload: { x: 1 } }));
    expect(other).toMatchObject({ type: "other", original_type: "agent_dreaming", seq: 9, thread_id: "T" });
    expect(parseFrame(JSON.stringify({ type: "future_frame", payload: {} }))).toBeNull();
    expect(parseFrame("not json")).toBeNull();
    expect(parseFrame(JSON.stringify([1, 2]))).toBeNull();
    expect(parseFrame(JSON.stringify({ type: "pong" }))).toEqual({ type: "pong", payload: {} });
  });
});
