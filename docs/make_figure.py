"""Architecture figure for the svg_tf README (SVG-LP, Denton & Fergus, ICML 2018).

Draws two panels into docs/svg_lp.png:
  * left,  "Training (SVG-LP)": encoder, posterior LSTM_phi, learned prior LSTM_psi,
    KL(q||p), frame predictor LSTM_theta, decoder, reconstruction loss, skip connections;
  * right, "Generation": z_t is sampled from the learned prior and the generated
    frame is fed back as the next input.

Regenerate (matplotlib only, no network access needed):
    /work/main/.venv/bin/python docs/make_figure.py
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

plt.rcParams.update({"font.size": 12, "mathtext.fontset": "dejavusans"})
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "svg_lp.png")
STYLE = {  # (face, edge) per network kind
    "codec": ("#dde4ee", "#5b6b82"), "post": ("#fde3c8", "#d9822b"),
    "prior": ("#d8eed6", "#4a9a4a"), "pred": ("#e7dcf3", "#7d5ba6"),
    "frame": ("#f3f3f3", "#8a8a8a"), "stat": ("#ffffff", "#9a9a9a"),
}

fig = plt.figure(figsize=(14, 6), dpi=100, facecolor="white")
ax = fig.add_axes([0, 0, 1, 1])
ax.set_xlim(0, 140)
ax.set_ylim(0, 60)
ax.axis("off")


def box(x, y, text, kind, w=16, h=5, **kw):
    """Rounded box centred on (x, y); returns its (left, right, bottom, top)."""
    face, edge = STYLE[kind]
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, facecolor=face, edgecolor=edge,
                                lw=1.6, boxstyle="round,pad=0,rounding_size=1.2", **kw))
    ax.text(x, y, text, ha="center", va="center", linespacing=1.3)
    return x - w / 2, x + w / 2, y - h / 2, y + h / 2


def arrow(p, q, color="#333333", ls="-", conn="arc3", **kw):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=14, lw=1.5,
                                 color=color, linestyle=ls, connectionstyle=conn,
                                 shrinkA=0, shrinkB=0, **kw))


def path(points, **kw):
    """Polyline through `points` with an arrow head on the last segment."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=kw.get("color", "#333333"), lw=1.5,
            linestyle=kw.get("ls", "-"), solid_capstyle="butt")
    arrow(points[-2], points[-1], **kw)


def label(x, y, text, **kw):
    ax.text(x, y, text, ha=kw.pop("ha", "left"), va="center", **kw)


# ----------------------------------------------------------------- training
ax.text(1.5, 58, "Training (SVG-LP)", fontsize=15, weight="bold", va="center")
C, A, B = 13, 38, 66  # columns: predictor / x_{t-1} (prior) / x_t (posterior)
for cx, name, sub in [(A, "$x_{t-1}$", "t-1"), (B, "$x_t$", "t")]:
    box(cx, 5, name, "frame", w=10)
    box(cx, 14, "Enc", "codec")
    arrow((cx, 7.5), (cx, 11.5))
    arrow((cx, 16.5), (cx, 22.75))
    label(cx + 1, 19.6, "$h_{%s}$" % sub)
box(A, 26, "LSTM$_\\psi$\nlearned prior $p$", "prior", h=6.5)
box(B, 26, "LSTM$_\\phi$\nposterior $q$", "post", h=6.5)
box(A, 35, "$\\mu_\\psi, \\sigma_\\psi$", "stat", w=12)
box(B, 35, "$\\mu_\\phi, \\sigma_\\phi$", "stat", w=12)
for cx in (A, B):
    arrow((cx, 29.25), (cx, 32.5))
# KL between prior and posterior outputs
red = "#c62828"
ax.add_patch(FancyBboxPatch((47.5, 33), 9, 4, facecolor="#fdecec", edgecolor=red, lw=1.4,
                            ls="--", boxstyle="round,pad=0,rounding_size=1"))
ax.text(52, 35, "KL$(q\\,\\|\\,p)$", color=red, ha="center", va="center", fontsize=11)
for a, b in [(44, 47.5), (56.5, 60)]:
    ax.plot([a, b], [35, 35], color=red, ls="--", lw=1.4)
box(B, 44, "$z_t$", "post", w=6, h=4)
arrow((B, 37.5), (B, 42))
label(B + 1, 39.7, "sample", fontsize=11, color="#555555")
# frame predictor, decoder, output
box(C, 44, "LSTM$_\\theta$\nframe predictor", "pred", h=6.5)
arrow((B - 3, 44), (C + 8, 44))
label(25.5, 45.7, "$[h_{t-1}, z_t]$", ha="center", fontsize=11, color="#555555")
path([(A, 19.5), (C, 19.5), (C, 40.75)])
box(C, 53, "Dec", "codec")
arrow((C, 47.25), (C, 50.5))
label(C + 1, 48.9, "$g_t$")
box(36, 53, "$\\hat{x}_t$", "frame", w=10)
arrow((C + 8, 53), (31, 53))
label(43, 53, "$\\|\\hat{x}_t - x_t\\|^2$", color=red, fontsize=13)
# skip connections from the encoder to the decoder
grey = "#8c8c8c"
path([(A - 8, 14), (2.5, 14), (2.5, 53), (C - 8, 53)], color=grey, ls="--")
label(16, 10.3, "skip connections\n(last context frame)", ha="center", fontsize=11,
      color="#666666", style="italic")

ax.plot([88, 88], [2, 58], color="#d0d0d0", lw=1.2)

# --------------------------------------------------------------- generation
ax.text(91, 58, "Generation", fontsize=15, weight="bold", va="center")
G1, G2 = 106, 128
box(G1, 5, "$\\hat{x}_{t-1}$", "frame", w=10)
label(G1 + 6, 5, "previous generated frame\n(or last context frame)", fontsize=11,
      color="#666666", style="italic")
box(G1, 14, "Enc", "codec")
arrow((G1, 7.5), (G1, 11.5))
box(G1, 26, "LSTM$_\\psi$\nlearned prior $p$", "prior", h=6.5)
arrow((G1, 16.5), (G1, 22.75))
label(G1 - 1, 19.6, "$h_{t-1}$", ha="right")
box(G1, 35, "$z_t \\sim p$", "prior", w=10, h=4)
arrow((G1, 29.25), (G1, 33))
box(G2, 35, "LSTM$_\\theta$\nframe predictor", "pred", h=6.5)
arrow((G1 + 5, 35), (G2 - 8, 35))
path([(G1, 19.5), (G2, 19.5), (G2, 31.75)])
box(G2, 45, "Dec", "codec")
arrow((G2, 38.25), (G2, 42.5))
box(G2, 54, "$\\hat{x}_t$", "frame", w=10)
arrow((G2, 47.5), (G2, 51.5))
L, Q = Path.LINETO, Path.CURVE3  # rounded loop from x_hat_t back to the input frame
loop = Path([(G2 - 5, 54), (95, 54), (92, 54), (92, 51), (92, 8), (92, 5), (95, 5), (G1 - 5, 5)],
            [Path.MOVETO, L, Q, Q, L, Q, Q, L])
ax.add_patch(FancyArrowPatch(path=loop, arrowstyle="-|>", mutation_scale=14, lw=1.6,
                             color="#1f6fb2"))
label(108, 52.2, "fed back as next input", fontsize=11, color="#1f6fb2", ha="center",
      style="italic")

fig.savefig(OUT, dpi=100, facecolor="white")
print("wrote", OUT)
