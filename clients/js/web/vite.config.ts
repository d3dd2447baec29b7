// Builds the chat page into the Python package (src/runwire/web/static), so running the
// server needs no Node. RUNWIRE_WEB_OUT builds elsewhere (the stale-bundle check).
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defaultClientConditions, defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));
const packaged = fileURLToPath(new URL("../../../src/runwire/web/static", import.meta.url));

export default defineConfig({
  root: here,
  base: "/",
  plugins: [react()],
  // The workspace packages are built from their sources ("source" export condition).
  resolve: { conditions: ["source", ...defaultClientConditions] },
  logLevel: "warn",
  build: {
    outDir: process.env.RUNWIRE_WEB_OUT ?? packaged,
    emptyOutDir: true,
    sourcemap: false,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1024,
  },
});
