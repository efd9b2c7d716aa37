// Build of the CityPilot console: everything (MapLibre, its worker, uPlot, CSS) is bundled
// into dist/, which CityPilot serves at "/". Nothing is fetched from the internet at run time.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
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
