// Builds the chat page into the Python package (src/runwire/web/static), so running the
// server needs no Node. RUNWIRE_WEB_OUT builds elsewhere (the stale-bundle check).
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defaultClientConditions, defineConfig, type Plugin } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));
const packaged = fileURLToPath(new URL("../../../src/runwire/web/static", import.meta.url));
const outDir = process.env.RUNWIRE_WEB_OUT ?? packaged;

/** Swagger UI for the server's /docs, from npm's swagger-ui-dist (the project's own
 *  distribution), copied next to the page: /docs then works without internet. */
function swaggerUi(): Plugin {
  const dist = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const files = ["swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css", "LICENSE"];
  return {
    name: "runwire-swagger-ui",
    apply: "build",
    writeBundle() {
      const to = join(outDir, "swagger-ui");
      mkdirSync(to, { recursive: true });
      for (const f of files) copyFileSync(join(dist, f), join(to, f));
    },
  };
}

export default defineConfig({
  root: here,
  base: "/",
  plugins: [react(), swaggerUi()],
  // The workspace packages are built from their sources ("source" export condition).
  resolve: { conditions: ["source", ...defaultClientConditions] },
  logLevel: "warn",
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1024,
  },
});
