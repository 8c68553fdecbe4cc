// X-ray image viewer on a <canvas>: zoom/pan, the usual screening filters, detection boxes drawn on top.
// Filters work on the pseudo-colour convention: organic = orange/brown, inorganic/mixed = green,
// metal/high-Z = blue, impenetrable = black, empty belt = white.
"use strict";

const CLASS_COLOURS = {weapon: "#ff3b30", narcotics: "#ffb000", currency: "#34c759", concealment: "#d05cff"};

class XrayViewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.src = null;          // ImageData of the original
    this.view = document.createElement("canvas");  // filtered image at native size
    this.boxes = [];
    this.reveal = null;       // a TIP box shown after the officer flags
    this.mode = "colour";     // colour | grey | organic | inorganic | metal
    this.inverse = false;
    this.edges = false;
    this.contrast = 1.0;
    this.brightness = 0;
    this.zoom = 1; this.panX = 0; this.panY = 0;
    this._drag = null;
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); this.zoomAt(e.offsetX, e.offsetY, e.deltaY < 0 ? 1.2 : 1 / 1.2); }, {passive: false});
    canvas.addEventListener("mousedown", (e) => { this._drag = [e.clientX, e.clientY, this.panX, this.panY]; });
    window.addEventListener("mouseup", () => { this._drag = null; });
    window.addEventListener("mousemove", (e) => {
      if (!this._drag) return;
      this.panX = this._drag[2] + (e.clientX - this._drag[0]);
      this.panY = this._drag[3] + (e.clientY - this._drag[1]);
      this.draw();
    });
    new ResizeObserver(() => this.fit()).observe(canvas);
  }

  load(url, boxes) {
    // Bags can arrive faster than images decode: only the latest requested image may be shown.
    const token = (this._token = (this._token || 0) + 1);
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        if (token !== this._token) return resolve();
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const cx = c.getContext("2d");
        cx.drawImage(img, 0, 0);
        this.src = cx.getImageData(0, 0, c.width, c.height);
        this.boxes = boxes || [];
        this.reveal = null;
        this.apply();
        this.reset();
        resolve();
      };
      img.onerror = () => (token === this._token ? reject(new Error("image failed to load: " + url)) : resolve());
      img.src = url;
    });
  }

  set(opts) { Object.assign(this, opts); this.apply(); this.draw(); }

  // Rebuild the filtered image at native resolution; drawing then only scales it.
  apply() {
    if (!this.src) return;
    const w = this.src.width, h = this.src.height;
    const s = this.src.data;
    const out = new ImageData(w, h);
    const d = out.data;
    const c = this.contrast, b = this.brightness;
    for (let i = 0; i < s.length; i += 4) {
      let r = s[i], g = s[i + 1], bl = s[i + 2];
      if (this.mode !== "colour") {
        const mx = Math.max(r, g, bl), mn = Math.min(r, g, bl);
        const sat = mx === 0 ? 0 : (mx - mn) / mx;
        let hue = 0;
        if (mx !== mn) {
          if (mx === r) hue = 60 * (((g - bl) / (mx - mn)) % 6);
          else if (mx === g) hue = 60 * ((bl - r) / (mx - mn) + 2);
          else hue = 60 * ((r - g) / (mx - mn) + 4);
          if (hue < 0) hue += 360;
        }
        const lum = 0.299 * r + 0.587 * g + 0.114 * bl;
        if (this.mode === "grey") { r = g = bl = lum; }
        else {
          const cls = sat < 0.18 ? "none" : (hue < 55 || hue >= 330) ? "organic" : hue < 170 ? "inorganic" : "metal";
          if (cls !== this.mode) {
            // Keep the shape faintly (as a light grey ghost) so the officer does not lose orientation.
            const ghost = 235 + (lum - 235) * 0.12; r = g = bl = ghost;
          }
        }
      }
      r = (r - 128) * c + 128 + b; g = (g - 128) * c + 128 + b; bl = (bl - 128) * c + 128 + b;
      if (this.inverse) { r = 255 - r; g = 255 - g; bl = 255 - bl; }
      d[i] = r; d[i + 1] = g; d[i + 2] = bl; d[i + 3] = 255;   // Uint8ClampedArray clamps
    }
    if (this.edges) this._sharpen(out);
    this.view.width = w; this.view.height = h;
    this.view.getContext("2d").putImageData(out, 0, 0);
  }

  // Edge enhancement: unsharp mask with a 3x3 Laplacian, strong enough to show wires and thin edges.
  _sharpen(img) {
    const w = img.width, h = img.height, d = img.data;
    const copy = new Uint8ClampedArray(d);
    const k = 1.6;
    for (let y = 1; y < h - 1; y++) {
      for (let x = 1; x < w - 1; x++) {
        const i = (y * w + x) * 4;
        for (let ch = 0; ch < 3; ch++) {
          const lap = 4 * copy[i + ch] - copy[i + ch - 4] - copy[i + ch + 4] - copy[i + ch - 4 * w] - copy[i + ch + 4 * w];
          d[i + ch] = copy[i + ch] + k * lap;
        }
      }
    }
  }

  fit() {
    const r = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.max(50, Math.round(r.width));
    this.canvas.height = Math.max(50, Math.round(r.height));
    this.draw();
  }

  reset() {
    if (!this.src) return;
    this.fit();
    const sc = Math.min(this.canvas.width / this.src.width, this.canvas.height / this.src.height);
    this.zoom = sc;
    this.panX = (this.canvas.width - this.src.width * sc) / 2;
    this.panY = (this.canvas.height - this.src.height * sc) / 2;
    this.draw();
  }

  zoomAt(x, y, f) {
    const nz = Math.min(20, Math.max(0.1, this.zoom * f));
    this.panX = x - (x - this.panX) * (nz / this.zoom);
    this.panY = y - (y - this.panY) * (nz / this.zoom);
    this.zoom = nz;
    this.draw();
  }

  draw() {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = this.inverse ? "#000" : "#f4f4f2";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.src) return;
    ctx.imageSmoothingEnabled = this.zoom < 2;
    ctx.setTransform(this.zoom, 0, 0, this.zoom, this.panX, this.panY);
    ctx.drawImage(this.view, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const all = this.boxes.map((f) => [f, CLASS_COLOURS[f.cls] || "#ffffff"]);
    if (this.reveal) all.push([this.reveal, "#ff2d55"]);
    ctx.font = "bold 12px 'DejaVu Sans', sans-serif";
    for (const [f, col] of all) {
      const [x1, y1, x2, y2] = f.box;
      const X = this.panX + x1 * this.zoom, Y = this.panY + y1 * this.zoom;
      const W = (x2 - x1) * this.zoom, H = (y2 - y1) * this.zoom;
      ctx.strokeStyle = col; ctx.lineWidth = 2.5;
      ctx.setLineDash(f.tip ? [6, 4] : []);
      ctx.strokeRect(X, Y, W, H);
      ctx.setLineDash([]);
      const label = f.label || `${f.cls} ${(f.score * 100).toFixed(0)}%${f.concealed ? " · concealed" : ""}`;
      const tw = ctx.measureText(label).width + 8;
      const ly = Y > 18 ? Y - 18 : Y + H;
      ctx.fillStyle = col; ctx.fillRect(X - 1, ly, tw, 18);
      ctx.fillStyle = "#000"; ctx.fillText(label, X + 3, ly + 13);
    }
  }
}
