// The page's token. Taken from the URL fragment (#token=…) and removed from the address bar
// at once, so it is neither in the history nor sent to the server as a URL. Kept in
// localStorage, shared by every tab of this origin: a thread link opened in a new tab
// (middle-click, a shared /#thread=… link) is signed in too. Hygiene: an expired or
// malformed token is deleted when read, "Sign out" deletes it, and nothing else of the
// user's is stored there (history lives in IndexedDB, keyed by user).

const KEY = "runwire.token";

export interface Claims {
  sub?: string;
  exp?: number;
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: the token lives only as long as this page
  }
}

let inMemory: string | null = null;

function read(): string | null {
  return storage()?.getItem(KEY) ?? inMemory;
}

export function storeToken(token: string): void {
  inMemory = token;
  storage()?.setItem(KEY, token);
}

export function forgetToken(): void {
  inMemory = null;
  storage()?.removeItem(KEY);
}

/** Move a token from the fragment to storage; return the stored token (expired or
 *  malformed ones are deleted and returned, so the gate can say what is wrong). */
export function takeToken(): string | null {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    // A bad link must not sign the other tabs out: only a usable token replaces the stored one.
    if (isExpired(fromUrl) || !claimsOf(fromUrl)?.sub) return fromUrl;
    storeToken(fromUrl);
  }
  const token = read();
  if (token && (isExpired(token) || !claimsOf(token)?.sub)) forgetToken();
  return token;
}

/** The stored token when it is usable and not `current` (e.g. another tab signed in). */
export function newerToken(current: string): string | null {
  const stored = read();
  return stored && stored !== current && !isExpired(stored) && claimsOf(stored)?.sub ? stored : null;
}

/** Calls `fn` when another tab stores a token (signing in again there helps here). */
export function onTokenStored(fn: (token: string) => void): () => void {
  const listener = (e: StorageEvent): void => {
    if (e.key === KEY && e.newValue) fn(e.newValue);
  };
  window.addEventListener("storage", listener);
  return () => window.removeEventListener("storage", listener);
}

export function claimsOf(token: string): Claims | null {
  try {
    const part = token.split(".")[1];
    if (!part) return null;
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const claims: unknown = JSON.parse(json);
    return typeof claims === "object" && claims !== null ? (claims as Claims) : null;
  } catch {
    return null;
  }
}

export function isExpired(token: string, now = Date.now()): boolean {
  const exp = claimsOf(token)?.exp;
  return typeof exp === "number" && exp * 1000 <= now;
}

/** ms until the token expires (null: no `exp`). */
export function msUntilExpiry(token: string, now = Date.now()): number | null {
  const exp = claimsOf(token)?.exp;
  return typeof exp === "number" ? exp * 1000 - now : null;
}
