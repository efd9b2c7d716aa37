// Build of the CityPilot console: everything (MapLibre, its worker, uPlot, CSS) is bundled
// into dist/, which CityPilot serves at "/". Nothing is fetched from the internet at run time.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { defineConfig, type Plugin } from "vite";

// The API explorer CityPilot serves at /docs: Swagger UI's own distribution (npm
// swagger-ui-dist), copied as is into dist/explorer/ so that /docs works offline.
const EXPLORER_FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"];

function apiExplorer(): Plugin {
  const root = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return {
    name: "citypilot-api-explorer",
    generateBundle() {
      for (const name of EXPLORER_FILES) {
        this.emitFile({ type: "asset", fileName: `explorer/${name}`, source: readFileSync(join(root, name)) });
      }
    },
  };
}

export default defineConfig({
  base: "./",
  plugins: [apiExplorer()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      output: {
        // The MapLibre worker is emitted as an asset; name it .js so that every static
        // server (Python's mimetypes included) sends a JavaScript MIME type for it.
        assetFileNames: (info) => {
          const name = info.names?.[0] ?? "";
          return name.endsWith(".mjs") ? "assets/[name]-[hash].js" : "assets/[name]-[hash][extname]";
        },
      },
    },
  },
  server: {
    // `npm run dev` against a local `citypilot serve` on port 8000.
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", ws: true },
      "/ngsi-ld": "http://127.0.0.1:8000",
    },
  },
});
