// Bundle the widget (ESM, default export {render}), the dashboard and the report page into the package's static folder.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const out = fileURLToPath(new URL("../widget/pulseboard/static/", import.meta.url));
const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["es2020"],
  loader: { ".css": "text" },
  logLevel: "info",
};

await build({ ...common, entryPoints: ["src/widget.ts"], format: "esm", outfile: out + "widget.js" });
await build({ ...common, entryPoints: ["src/runs_widget.ts"], format: "esm", outfile: out + "runs.js" });
await build({ ...common, entryPoints: ["src/dashboard.ts"], format: "iife", outfile: out + "dashboard.js" });
// The offline report page (`pulseboard report`): inlined into each report's HTML.
await build({ ...common, entryPoints: ["src/report.ts"], format: "iife", outfile: out + "report.js" });
