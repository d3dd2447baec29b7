import { defineConfig } from "vitest/config";

// Unit tests of the packages. Files that need a DOM say so with
// `// @vitest-environment jsdom` on their first line.
export default defineConfig({
  resolve: { conditions: ["source"] },
  test: {
    include: ["packages/*/test/**/*.test.{ts,tsx}", "web/test/**/*.test.{ts,tsx}"],
    environment: "node",
    restoreMocks: true,
  },
});
