// The toolbar above every chart: reset zoom, log y, smoothing (button + slider), CSV, PNG.
// Plain buttons, so it is reachable with Tab and works with Enter/Space.

export interface ToolbarActions {
  resetZoom(): void;
  toggleLog(): void;
  setSmoothing(s: number): void;
  csv(): void;
  png(): void;
}

export class Toolbar {
  readonly el: HTMLDivElement;
  private log: HTMLButtonElement;
  private smooth: HTMLButtonElement;
  private slider: HTMLInputElement;
  private lastSmoothing = 0.6;

  constructor(actions: ToolbarActions, smoothing: number) {
    this.el = document.createElement("div");
    this.el.className = "pulseboard-toolbar";
    this.el.setAttribute("role", "toolbar");
    const button = (action: string, text: string, title: string, run: () => void) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.action = action;
      b.textContent = text;
      b.title = title;
      b.addEventListener("click", run);
      this.el.appendChild(b);
      return b;
    };
    button("reset-zoom", "reset", "reset zoom (or double-click the plot)", () => actions.resetZoom());
    this.log = button("log-y", "log y", "logarithmic y axis", () => actions.toggleLog());
    this.smooth = button("smooth", "smooth", "smoothing on/off", () => {
      const next = Number(this.slider.value) > 0 ? 0 : this.lastSmoothing;
      this.setSmoothing(next);
      actions.setSmoothing(next);
    });
    this.slider = document.createElement("input");
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.max = "0.99";
    this.slider.step = "0.01";
    this.slider.dataset.action = "smoothing";
    this.slider.title = "smoothing";
    this.slider.setAttribute("aria-label", "smoothing");
    this.slider.addEventListener("input", () => {
      const s = Number(this.slider.value);
      this.setSmoothing(s);
      actions.setSmoothing(s);
    });
    this.el.appendChild(this.slider);
    button("csv", "CSV", "download every point held, as CSV", () => actions.csv());
    button("png", "PNG", "download the plot as PNG", () => actions.png());
    this.setSmoothing(smoothing);
  }

  setSmoothing(s: number): void {
    if (s > 0) this.lastSmoothing = s;
    this.slider.value = String(s);
    this.smooth.setAttribute("aria-pressed", String(s > 0));
    this.smooth.textContent = s > 0 ? `smooth ${s.toFixed(2)}` : "smooth";
  }

  setLog(on: boolean): void {
    this.log.setAttribute("aria-pressed", String(on));
  }
}
