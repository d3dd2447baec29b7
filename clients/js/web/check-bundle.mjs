// Fails when the committed bundle in src/runwire/web/static is not what the sources build.
// Builds into web/.build-check and compares the two trees file by file, byte for byte.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const fresh = join(root, "web", ".build-check");
const committed = fileURLToPath(new URL("../../../src/runwire/web/static", import.meta.url));

function files(dir) {
  const out = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

rmSync(fresh, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, "node_modules", "vite", "bin", "vite.js"), "build",
  "--config", join(root, "web", "vite.config.ts")],
  { cwd: root, stdio: "inherit", env: { ...process.env, RUNWIRE_WEB_OUT: fresh } });
const want = files(fresh);
const have = files(committed);
const problems = [];
for (const [name, bytes] of want) {
  if (!have.has(name)) problems.push(`missing: ${name}`);
  else if (!have.get(name).equals(bytes)) problems.push(`differs: ${name}`);
}
for (const name of have.keys()) if (!want.has(name)) problems.push(`not built by the sources: ${name}`);
rmSync(fresh, { recursive: true, force: true });
if (problems.length) {
  console.error("The committed chat page bundle is stale (src/runwire/web/static):");
  for (const p of problems) console.error(`  ${p}`);
  console.error("Rebuild it with `make web` and commit the result.");
  process.exit(1);
}
console.log(`chat page bundle is up to date (${want.size} files)`);
