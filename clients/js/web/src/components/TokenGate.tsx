import { useState, type FormEvent, type ReactNode } from "react";
import { isExpired, storeToken } from "../token.ts";

const TEXT = {
  missing: "You are not signed in: there is no token.",
  expired: "Your token has expired.",
  invalid: "Your token is invalid or has expired.",
} as const;

/** Shown instead of the chat when there is no usable token: says how to get one. */
export function TokenGate({ reason }: { reason: keyof typeof TEXT }): ReactNode {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    const token = value.trim().replace(/^.*#token=/, "");
    if (!token) return;
    if (isExpired(token)) { setError("That token has expired too."); return; }
    storeToken(token);
    location.reload();
  };
  return (
    <div className="gate" data-testid="token-state" role="alert">
      <h1>runwire</h1>
      <p data-testid="token-message">{TEXT[reason]}</p>
      <p>
        Open the link printed by <code>runwire serve</code>, or make a token with{" "}
        <code>runwire token --user NAME</code> and open <code>/#token=&lt;token&gt;</code>.
      </p>
      <form onSubmit={submit} className="gate-form">
        <label htmlFor="token-input">…or paste a token or login link</label>
        <input id="token-input" data-testid="token-input" value={value} autoComplete="off"
               onChange={(e) => setValue(e.target.value)} />
        <button type="submit">Sign in</button>
        {error && <p className="error">{error}</p>}
      </form>
    </div>
  );
}
