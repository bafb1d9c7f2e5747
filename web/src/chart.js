// The dequantised vector of one pixel as a bar chart (SVG, one bar per band).

const NS = "http://www.w3.org/2000/svg";

export function drawVector(svg, vector, highlight = []) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const mid = height / 2;
  const axis = document.createElementNS(NS, "line");
  Object.entries({ x1: 0, x2: width, y1: mid, y2: mid, stroke: "#555" })
    .forEach(([k, v]) => axis.setAttribute(k, v));
  svg.appendChild(axis);
  if (!vector) return;
  const top = Math.max(...vector.map(Math.abs)) || 1;
  const step = width / vector.length;
  vector.forEach((value, band) => {
    const h = (Math.abs(value) / top) * (mid - 2);
    const bar = document.createElementNS(NS, "rect");
    bar.setAttribute("class", "bar");
    bar.setAttribute("data-band", String(band));
    bar.setAttribute("data-value", String(value));
    bar.setAttribute("x", (band * step).toFixed(2));
    bar.setAttribute("width", Math.max(step - 0.5, 0.5).toFixed(2));
    bar.setAttribute("y", (value >= 0 ? mid - h : mid).toFixed(2));
    bar.setAttribute("height", h.toFixed(2));
    bar.setAttribute("fill", highlight.includes(band) ? "#ffcc00" : value >= 0 ? "#4fc3f7" : "#f48fb1");
    const title = document.createElementNS(NS, "title");
    title.textContent = `band ${band}: ${value.toPrecision(6)}`;
    bar.appendChild(title);
    svg.appendChild(bar);
  });
}
