// Light or dark: the system's choice (prefers-color-scheme) until the user picks one with
// the toggle; the pick is kept in localStorage and set as <html data-theme="…">.
import { useEffect, useState } from "react";

export type Theme = "light" | "dark";
const KEY = "runwire.theme";

function systemTheme(): Theme {
  return window.matchMedia?.("(prefers-color-scheme: light)").matches ? "light" : "dark";
}

function stored(): Theme | null {
  try {
    const v = localStorage.getItem(KEY);
    return v === "light" || v === "dark" ? v : null;
  } catch {
    return null;
  }
}

/** Sets the stored theme on <html> before the first render (no flash of the other one). */
export function applyStoredTheme(): void {
  const theme = stored();
  if (theme) document.documentElement.dataset.theme = theme;
}

/** The theme in effect and a toggle (which pins the other one). */
export function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(() => stored() ?? systemTheme());
  useEffect(() => {
    if (stored()) return undefined;
    const media = window.matchMedia?.("(prefers-color-scheme: light)");
    const follow = (): void => setTheme(systemTheme());
    media?.addEventListener("change", follow);
    return () => media?.removeEventListener("change", follow);
  }, []);
  const toggle = (): void => {
    const next: Theme = theme === "light" ? "dark" : "light";
    try { localStorage.setItem(KEY, next); } catch { /* not kept */ }
    document.documentElement.dataset.theme = next;
    setTheme(next);
  };
  return [theme, toggle];
}
