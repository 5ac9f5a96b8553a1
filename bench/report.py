"""The README's measured figures, rendered from the bench records in bench/results/.

Each README block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` is what `render(NAME)`
makes from the committed JSON files, so every speed figure there traces to a file (which says the
command, the machine and the packages). After re-running benches:

  python bench/report.py --write     # rewrites the README's blocks
  python bench/report.py             # checks them (tests/test_readme_numbers.py does too)
"""

import argparse
import os
import re
import sys
from typing import Callable, Dict

import record

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCK = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", re.S)


def _r(name):
  return record.load(name)["result"]


def _machine(name):
  m = record.load(name)["machine"]
  return f"{m['cpu']}, {m['cores']} cores"


def two_commands() -> str:
  f32 = _r("train_step_smmnist_b16_float32")
  seconds = 200 * f32["frames_per_step"] / f32["frames_per_s"]
  return (f"Train SVG-LP on Stochastic Moving MNIST (real MNIST digits, offline) for a short run, "
          f"about {round(seconds / 60 + 0.5)} minutes on a 2-core CPU (200 steps at about "
          f"{f32['frames_per_s']:.0f} frames/s, `bench/results/train_step_smmnist_b16_float32."
          "json`); it prints the run directory, then progress lines, and writes checkpoints,\n"
          "TensorBoard summaries and a sample GIF there:\n")


def _ratio(r, base):
  return f"{r['frames_per_s']:.1f} ({r['frames_per_s'] / base['frames_per_s']:.2f}x)"


SPEED_ROWS = [  # (label, yardstick record, svg_tf record prefix, before-revision record prefix)
    ("train SM-MNIST, batch 16", "yardstick_train_smmnist_b16", "train_step_smmnist_b16",
     "train_step_before_smmnist_b16"),
    ("train BAIR (VGG), batch 8", "yardstick_train_bair_b8", "train_step_bair_b8", None),
    ("sample SM-MNIST, batch 16, 5 -> 25", "yardstick_generate_smmnist_b16", "sample_smmnist_b16",
     "sample_before_smmnist_b16"),
    ("sample BAIR, batch 8, 2 -> 28", "yardstick_generate_bair_b8", "sample_bair_b8",
     "sample_before_bair_b8"),
]
PRECISIONS = ("float32", "mixed_bfloat16")


def train_speed() -> str:
  lines = [f"Frames/s, measured alone and back to back on this 2-core CPU "
           f"({_machine('yardstick_train_smmnist_b16')}; `bash bench/speed.sh`, records in "
           "`bench/results/`), one run each; in brackets the ratio to the PyTorch yardstick "
           "(torch 2.13, 2 threads) in the same run and, for sampling, to the yardstick's "
           "`--encode_once` mode (each frame encoded once, as svg_tf does):", "",
           "| work | PyTorch yardstick | svg_tf float32 | svg_tf mixed_bfloat16 | before: float32 | "
           "before: mixed_bfloat16 |", "|---|---|---|---|---|---|"]
  for label, yard_name, ours, before in SPEED_ROWS:
    yard = _r(yard_name)
    once = _r(f"{yard_name}_encode_once") if "generate" in yard_name else None
    cells = [label, f"{yard['frames_per_s']:.1f}" + (
        f" (`--encode_once` {once['frames_per_s']:.1f})" if once else "")]
    for p in PRECISIONS:
      r = _r(f"{ours}_{p}")
      cells.append(f"{r['frames_per_s']:.1f} ({r['frames_per_s'] / yard['frames_per_s']:.2f}x"
                   + (f", {r['frames_per_s'] / once['frames_per_s']:.2f}x" if once else "")
                   + ")")
    for p in PRECISIONS:
      cells.append(_ratio(_r(f"{before}_{p}"), yard) if before else "-")
    lines.append("| " + " | ".join(cells) + " |")
  batch = {p: _r(f"sample_smmnist_b16_{p}_batch_bn") for p in PRECISIONS}
  yard = _r("yardstick_generate_smmnist_b16")
  bair_batch, bair_yard = _r("sample_bair_b8_float32_batch_bn"), _r("yardstick_generate_bair_b8")
  lines += ["", f"\"before\" is the code at the start of this work (revision "
            f"`{_before_revision()}`), run in the same session. Sampling on batch statistics "
            "(`--generation_bn=batch`, what the reference and the yardstick do; no BatchNorm "
            f"folding then): SM-MNIST float32 {_ratio(batch['float32'], yard)}, mixed_bfloat16 "
            f"{_ratio(batch['mixed_bfloat16'], yard)}; BAIR float32 "
            f"{_ratio(bair_batch, bair_yard)}."]
  jit = {p: _r(f"train_step_smmnist_b16_{p}_jit") for p in PRECISIONS}
  plain = {p: _r(f"train_step_smmnist_b16_{p}") for p in PRECISIONS}
  lines += ["", "XLA (`--jit_compile`) on this CPU, recorded before this work: "
            f"{jit['float32']['step_ms_median'] / 1000:.2f} s per SM-MNIST step in float32 and "
            f"{jit['mixed_bfloat16']['step_ms_median'] / 1000:.2f} s in bfloat16; without it now "
            f"{plain['float32']['step_ms_median'] / 1000:.2f} s and "
            f"{plain['mixed_bfloat16']['step_ms_median'] / 1000:.2f} s (medians of "
            f"{plain['float32']['steps']} steps after {plain['float32']['warmup']} untimed ones)."]
  return "\n".join(lines) + "\n"


PAIRED = [("train SM-MNIST, batch 16", "paired_train_smmnist_b16", (2.0, 3.5)),
          ("sample SM-MNIST, batch 16, 5 -> 25", "paired_sample_smmnist_b16", (1.8, 3.0)),
          ("sample BAIR, batch 8, 2 -> 28", "paired_sample_bair_b8", (1.8, 3.0))]


def paired_speed() -> str:
  lines = ["| work | rounds | svg_tf float32 | svg_tf mixed_bfloat16 | the issue's targets | "
           "vs the yardstick's `--encode_once` |", "|---|---|---|---|---|---|"]
  for label, name, (f32_target, bf16_target) in PAIRED:
    r = _r(name)
    m = r["median_ratios"]
    once = (f"{m['float32_vs_encode_once']:.2f}x / {m['mixed_bfloat16_vs_encode_once']:.2f}x"
            if "float32_vs_encode_once" in m else "-")
    runs = lambda key: "/".join(f"{x['ratios'][key]:.2f}" for x in r["rounds"])
    lines.append(f"| {label} | {len(r['rounds'])} | {m['float32']:.2f}x ({runs('float32')}) | "
                 f"{m['mixed_bfloat16']:.2f}x ({runs('mixed_bfloat16')}) | >= {f32_target}x / "
                 f">= {bf16_target}x | {once} |")
  return "\n".join(lines) + "\n"


def _before_revision() -> str:
  """The revision the before_* records were made at (bench/speed.sh --before=REV)."""
  return record.load("sample_before_smmnist_b16_float32").get("revision", "?")


def roofline() -> str:
  r = _r("roofline")
  peaks = r["peaks"]
  bf16_shapes = [s["gflop_per_s"] for s in peaks["mixed_bfloat16"]["shapes"]]
  lines = [f"This machine's limit (`bench/roofline.py`, the same run): large float32 convolutions "
           f"peak at {peaks['float32']['gflop_per_s']:.0f} GFLOP/s, bfloat16 ones at "
           f"{peaks['mixed_bfloat16']['gflop_per_s']:,.0f} on their best shape (AMX; "
           f"{min(bf16_shapes):,.0f}-{sorted(bf16_shapes)[-2]:,.0f} on the others). A generated "
           f"frame is one forward pass ({r['forward_gflop_per_frame']['smmnist']:.2f} GFLOP for "
           f"SM-MNIST, {r['forward_gflop_per_frame'].get('bair', 0):.2f} for BAIR's VGG), a "
           "training frame three:", "",
           "| record | frames/s | GFLOP/s | of this CPU's peak | limit, frames/s |",
           "|---|---|---|---|---|"]
  for b in r["benches"]:
    if b["jit_compile"] or "before" in b["record"]:
      continue
    lines.append(f"| `{b['record'][:-5]}` | {b['frames_per_s']:.1f} | {b['gflop_per_s']:.0f} | "
                 f"{100 * b['fraction_of_peak']:.0f}% | {b['limit_frames_per_s']:,.0f} |")
  return "\n".join(lines) + "\n"


def sample_speed() -> str:
  parts = []
  for p in PRECISIONS:
    e, wide = _r(f"evaluate_smmnist_{p}"), _r(f"sample_smmnist_b256_{p}")
    parts.append(
        f"{p}: {e['videos_x_samples_per_s']:.1f} videos x samples per second in all, sampling "
        f"{e['frames_per_s']:.0f} frames/s and scoring (SSIM and PSNR of every sample) "
        f"{100 * e['scoring_over_sampling']:.1f}% of the sampling time; at 256 rows per call "
        f"{wide['frames_per_s']:.0f} frames/s")
  e = _r("evaluate_smmnist_float32")
  return (f"evaluate.py's whole loop (`bench/sample.py --evaluate`: {e['videos']} SM-MNIST test "
          f"videos x {e['num_samples']} samples, {e['n_past']} -> {e['n_future']} frames, one "
          f"video's samples per call, full-size model on this 2-core CPU): "
          + "; ".join(parts) + ". The speed tables are under \"Speed\".\n")


ATTRIBUTION = [("train SM-MNIST, batch 16", "train_smmnist_b16"),
               ("train BAIR (VGG), batch 8", "train_bair_b8"),
               ("sample SM-MNIST, batch 16", "sample_smmnist_b16"),
               ("sample BAIR, batch 8", "sample_bair_b8")]


def attribution() -> str:
  lines = ["| work | precision | step, ms (ratio) | target, ms (ratio) | floor, ms (ratio) | "
           "convolutions and matmuls in the step, ms | gap: this CPU's / svg_tf's, ms | "
           "largest other op kinds, ms |", "|---|---|---|---|---|---|---|---|"]
  for label, name in ATTRIBUTION:
    for p in PRECISIONS:
      r = _r(f"attribution_{name}_{p}")
      g = r["gap"]
      others = [(k, ms) for k, ms in r["op_ms_per_step_by_kind"].items()
                if k not in ("convolution", "matmul")][:3]
      lines.append(
          f"| {label} | {p} | {r['step_ms_median']:,.0f} ({g['ratio']:.2f}x) | "
          f"{g['target_step_ms']:,.0f} ({g['target_ratio']}x) | {r['floor_ms']:,.0f} "
          f"({g['floor_ratio']:.2f}x) | {r['kernels_in_step_ms']:,.0f} | "
          f"{g['cpu_part_ms']:,.0f} / {g['svg_tf_part_ms']:,.0f} | "
          + ", ".join(f"{k} {ms:,.0f}" for k, ms in others) + " |")
  return "\n".join(lines) + "\n"


def input_speed() -> str:
  lines = ["| dataset | input pipeline | full-size training step | ratio (target >= 10) |",
           "|---|---|---|---|"]
  results = {d: _r(f"input_pipeline_{d}") for d in ("bair", "kth")}
  for dataset, label in (("bair", "BAIR (VGG-64, 12-frame windows)"),
                         ("kth", "KTH (VGG-64, 20-frame windows)")):
    r = results[dataset]
    lines.append(f"| {label} | {r['input_frames_per_s']:,.0f} frames/s | "
                 f"{r['train_step_frames_per_s']:.1f} frames/s | {r['input_over_step']:,.0f}x |")
  bair = results["bair"]
  disk = 200e6 / 737e3 * 12  # 200 MB/s over a whole 737 KB record per 12-frame window
  lines += ["", "The files were in the page cache. From a disk, BAIR reads a whole 737 KB record "
            "(30 frames, two\ncameras) per 12-frame window, so 200 MB/s of disk still gives about "
            f"{disk:,.0f} frames/s, {disk / bair['train_step_frames_per_s']:,.0f}x the step."]
  return "\n".join(lines) + "\n"


def serve_speed() -> str:
  parts = []
  for preset, label in (("smmnist", "SM-MNIST"), ("bair", "BAIR")):
    for p in PRECISIONS:
      r = _r(f"serve_{preset}" + ("" if p == "float32" else f"_{p}"))
      parts.append(f"{label} {p} p50 {r['p50_ms'] / 1000:.1f} s over {r['requests']} "
                   f"request{'s' if r['requests'] > 1 else ''} ({r['frames_per_s']:.0f} "
                   f"generated frames/s; in process {r['in_process_frames_per_s']:.0f}, served "
                   f"at {r['served_over_in_process']:.2f}x of it)")
  return ("through the loaded SavedModel, and the same request through evaluate.py's sampler "
          "in the exporting process. On this 2-core CPU, untrained full-size models, float32 and "
          "`--precision=mixed_bfloat16` exports: " + "; ".join(parts) + ".\n")


def serve_memory() -> str:
  lines = ["| preset | request at the caps | frames counted | latency | peak RSS |",
           "|---|---|---|---|---|"]
  peaks = {}
  for preset, label in (("smmnist", "SM-MNIST"), ("bair", "BAIR")):
    record_ = _r(f"serve_largest_{preset}")
    for r in record_["requests"]:
      if "error" in r:
        raise ValueError(f"serve_largest_{preset}: {r['name']} failed: {r['error']}")
      shape = (f"`{r['signature']}` {r['videos']} x {r['num_samples']} x ({r['n_context']} + "
               f"{r['num_future']})")
      lines.append(f"| {label} | {shape} | {r['frames_counted']:,} | {r['p50_ms'] / 1000:.0f} s | "
                   f"{r['peak_rss_mib'] / 1024:.2f} GiB |")
      peaks[label] = max(peaks.get(label, 0), r["peak_rss_mib"])
  return "\n".join(lines + [
      "", f"The highest peak, the loaded SavedModel included: {peaks['SM-MNIST'] / 1024:.1f} GiB "
      f"for SM-MNIST, {peaks['BAIR'] / 1024:.1f} GiB for BAIR (`bench/results/serve_largest_*.json`"
      "; the 1,000-context-frame request that once took 8.7 GiB is now refused)."]) + "\n"


def precision_tracking() -> str:
  r = _r("precision_tracking_smmnist_b16")
  first, last = r["windows"][0], r["windows"][-1]
  h = _r("precision_tracking_smmnist_float16_small")
  f, l = h["windows"][0], h["windows"][-1]
  return (f"A short run's losses in mixed_bfloat16 track float32 from the same seed within "
          f"{100 * r['largest_relative_gap']:.2f}% over {r['steps']} steps\n"
          f"(`bench/precision_tracking.py`: window means {first['mixed_bfloat16']:.5f} vs "
          f"{first['float32']:.5f} at steps {first['steps']}, {last['mixed_bfloat16']:.5f} vs "
          f"{last['float32']:.5f} at steps {last['steps']}). mixed_float16 (emulated on this CPU, "
          f"so compared at width {h['base_filters']}, batch {h['batch']}) tracks float32 within "
          f"{100 * h['largest_relative_gap_mixed_float16']:.2f}% over {h['steps']} steps "
          f"(window means {f['mixed_float16']:.5f} vs {f['float32']:.5f} at steps {f['steps']}, "
          f"{l['mixed_float16']:.5f} vs {l['float32']:.5f} at steps {l['steps']}; "
          f"{h['skipped_mixed_float16']} step{'' if h['skipped_mixed_float16'] == 1 else 's'} "
          f"skipped by the loss scale, which ended at {h['final_loss_scale_mixed_float16']:g}: a "
          "skipped step leaves float16 an update behind while the loss falls fast).\n")


def sample_tracking() -> str:
  r = _r("sample_tracking_smmnist")
  e = r["evaluation"]
  gaps = r["mean_abs_gap_per_step"]
  return (f"Samples in bfloat16 track float32's (`bench/sample_tracking.py`, `bench/results/sample_tracking_smmnist.json`: an SM-MNIST SVG-LP "
          f"of width {r['base_filters']} trained {r['steps']} steps in float32, sampled in both "
          f"precisions with the same weights, seed and noise, {r['videos']} test videos x "
          f"{r['num_samples']} samples, {r['n_past']} -> {r['n_future']} frames): the mean "
          f"absolute pixel difference grows from {gaps[0]:.4f} at the first generated frame to "
          f"{gaps[-1]:.4f} at the last (PSNR of bfloat16 against float32 "
          f"{r['psnr_bf16_vs_f32_first_step']:.1f} dB, then {r['psnr_bf16_vs_f32_last_step']:.1f}"
          f" dB: each frame is fed back, so rounding differences grow); what the evaluation "
          f"reports barely moves: best-of-{r['num_samples']} SSIM {e['mixed_bfloat16']['best_ssim']:.4f}"
          f" against {e['float32']['best_ssim']:.4f}, PSNR {e['mixed_bfloat16']['best_psnr']:.2f}"
          f" dB against {e['float32']['best_psnr']:.2f}.\n")


def own_videos() -> str:
  r = _r("own_videos")
  s = r["seconds"]
  return "\n".join([
      f"Measured here (2-core CPU, `bench/own_videos.py`, `bench/results/own_videos.json`), on a "
      f"folder of {r['clips']} synthetic {r['clip_size'][0]}x{r['clip_size'][1]} mp4 clips of "
      f"{r['frames_per_clip']} frames at 25 fps (moving shapes, stand-ins for a phone's clips; "
      f"`pipelines/fixtures/videos.py` writes such files), {r['test_videos']} of them in the "
      "test split:", "",
      "| step | time | what came out |", "|---|---|---|",
      f"| convert (`python -m pipelines.videos`) | {s['convert']:.1f} s | {r['clips']} clips "
      f"centre-cropped to 64x64x3, {r['train_videos']} train / {r['test_videos']} test |",
      f"| `svg-train` ({r['train_steps']} steps, batch 8, the small model above) | "
      f"{s['train']:.0f} s | mean loss of the first 50 steps {r['loss_first_50_steps']}, of the "
      f"last 50 {r['loss_last_50_steps']} |",
      f"| `svg-evaluate` ({r['eval_videos']} clips x 20 samples) | {s['evaluate']:.0f} s | SSIM "
      f"{r['eval_ssim'][0]:.3f} +- {r['eval_ssim'][1]:.3f}, PSNR {r['eval_psnr'][0]:.1f} +- "
      f"{r['eval_psnr'][1]:.1f} dB, figures, TensorBoard events |",
      f"| `svg-predict` (5 samples x 20 frames) | {s['predict']:.0f} s | `futures.gif`/`.mp4`/"
      f"`.npz`, `predict.json`; best SSIM {r['predict_best_ssim']:.3f} against the clip's real "
      "frames |"]) + "\n"


def _phase(case, prefix):
  return next(p for p in case["phases"] if p["phase"].startswith(prefix))


def memory() -> str:
  cases = _r("memory")["cases"]
  yard_peak = _r("memory")["yardstick_peak_mib"]
  f32, bf16, lean = cases["train_float32"], cases["train_mixed_bfloat16"], cases["train_float32_lean"]
  yard, sampler, train_py = cases["yardstick_train"], cases["sampler_float32"], cases["train_py_float32"]
  rows = [("svg_tf training, float32", f32), ("svg_tf training, mixed_bfloat16", bf16),
          ("svg_tf training, float32, the opt-in environment below", lean),
          (f"PyTorch yardstick training (torch {yard['torch'].split('+')[0]}, {yard['threads']} "
           "threads)", yard),
          ("the same through `yardstick.sh`, unprobed", cases["yardstick_train_plain"]),
          (f"`train.py` float32, {train_py['steps']} steps (data, summaries, a checkpoint, a "
           "sample GIF)", train_py),
          (f"evaluate's sampler, `--chunk_size={sampler['chunk_size']}` (default), "
           f"{sampler['n_past']} -> {sampler['n_future']} frames", sampler)]
  lines = ["| case | peak MiB | baseline MiB | peak / yardstick's |", "|---|---|---|---|"]
  for label, c in rows:
    peak = f"{c['peak_mib']:,.0f}"
    if c.get("repeats", 1) > 1:
      peak += f" ({min(c['peak_mib_runs']):,.0f}-{max(c['peak_mib_runs']):,.0f})"
    base = "-" if c["baseline_mib"] is None else f"{c['baseline_mib']:,.0f}"
    ratio = "-" if c is sampler else f"{c['peak_mib'] / yard_peak:.2f}x"
    lines.append(f"| {label} | {peak} | {base} | {ratio} |")
  imp, libs = _phase(f32, "import tensorflow"), _phase(f32, "import keras")
  build, trace, last = _phase(f32, "build"), _phase(f32, "trace"), f32["phases"][-1]
  step_tensors = max(_phase(f32, "step 1")["tensors_peak_mib"], last["tensors_peak_mib"])
  growth = f32["peak_mib"] - trace["rss_end_mib"]
  tensor_growth = step_tensors - trace["tensors_end_mib"]
  bf16_tensors = max(_phase(bf16, "step 1")["tensors_peak_mib"], bf16["phases"][-1]["tensors_peak_mib"])
  yimp, ybuild = _phase(yard, "import torch"), _phase(yard, "build")
  digits = cases["smmnist_digits"]["digits"]
  context = _r("memory_sampler_context")["cases"]["sampler_context"]
  encode = _phase(context, "encode")
  small = _r("memory_sampler_chunk64")["cases"]["sampler_float32"]
  calls = [p for p in sampler["phases"] if p["phase"].startswith("call")]
  small_calls = [p for p in small["phases"] if p["phase"].startswith("call")]
  lines += [
      "", f"Each case in a fresh process; peak RSS (VmHWM) of the whole process. Training: batch 16, "
      f"{f32['steps']} steps (the yardstick's 3 warm-up + 10), the median of {f32['repeats']} runs "
      "(their range in brackets). Baseline: RSS after the imports and building the model and its "
      "optimizer (or sampler), before the first step. The sampler: "
      f"{sampler['rows_per_call']} (video, sample) rows per call (8 videos x 100 samples, in "
      f"chunks of {sampler['chunk_size']}), two calls; evaluate.py now samples one video per call "
      "by default (100 rows, one chunk), so its sampling peak stays below this.", "",
      f"Where svg_tf's training memory goes (float32, the median run): importing TensorFlow "
      f"{imp['rss_end_mib']:,.0f} MiB (torch: {yimp['rss_end_mib']:,.0f}); Keras, TensorFlow "
      f"Probability and svg_tf {libs['rss_end_mib'] - imp['rss_end_mib']:,.0f} more; building "
      f"the Trainer {build['rss_end_mib'] - libs['rss_end_mib']:,.0f} ({build['tensors_end_mib']:,.0f}"
      f" MiB of it tensors: the weights and Adam's two moments); tracing the step "
      f"{trace['rss_end_mib'] - build['rss_end_mib']:,.0f}. The steps add {growth:,.0f} MiB: the "
      f"tensors TensorFlow's allocator holds peak at {step_tensors:,.0f} MiB during a step, "
      f"{tensor_growth:,.0f} more than between steps (the activations kept for the backward pass, "
      f"and the gradients; {bf16_tensors:,.0f} MiB in all under mixed_bfloat16), and the other "
      f"{growth - tensor_growth:,.0f} MiB is the pool they come from (oneDNN's BFC pool keeps what "
      f"it has grown to: the RSS after the last step is {last['rss_end_mib']:,.0f} MiB, and glibc "
      f"counts {f32['malloc']['mmapped_mib']:,.0f} MiB of mmapped blocks in use against "
      f"{last['tensors_end_mib']:,.0f} MiB of live tensors), oneDNN's kernels and TensorFlow's "
      f"executor. The yardstick needs {ybuild['rss_end_mib']:,.0f} MiB "
      f"before its first step and grows {yard['peak_mib'] - ybuild['rss_end_mib']:,.0f} in its "
      f"steps; after its last step glibc holds {yard['malloc']['free_in_heap_mib']:,.0f} MiB that "
      f"torch freed (`malloc_trim` gives back {yard['malloc']['trim_returned_mib']:,.0f}).", "",
      f"`train.py` peaks {train_py['peak_mib'] - f32['peak_mib']:,.0f} MiB above the Trainer "
      "alone; the MNIST digits its SM-MNIST generator draws from are kept as float32 [N, 32, 32]: "
      f"{digits['train']['mib']:,.0f} MiB for the training split and {digits['test']['mib']:,.0f} "
      f"for the test split ({digits['train']['as_uint8_mib']:,.0f} and "
      f"{digits['test']['as_uint8_mib']:,.0f} as uint8, the PIL resize's own output). The "
      f"sampler's tensors peak at {max(p['tensors_peak_mib'] for p in calls):,.0f} MiB per chunk "
      f"of {sampler['chunk_size']} rows: encoding a chunk's context, {context['images_encoded']:,} "
      f"frames at once, alone takes the process from {context['baseline_mib']:,.0f} to "
      f"{encode['peak_mib']:,.0f} MiB and keeps {context['skips_mib']:,.0f} MiB of skip features "
      "(of every context frame; the default skip rule uses the last one's); each call's frames, "
      f"{sampler['output_mib']:,.0f} MiB, are also held twice while the chunks are concatenated. "
      f"`--chunk_size={small['chunk_size']}` peaks at {small['peak_mib']:,.0f} MiB "
      f"(`bench/results/memory_sampler_chunk64.json`; {sum(p['seconds'] for p in small_calls):,.0f}"
      f" s for the two calls against {sum(p['seconds'] for p in calls):,.0f} s at "
      f"{sampler['chunk_size']}, on a machine shared with other jobs)."]
  knobs = _r("memory_knobs")
  lines += ["", f"Environment settings (`bench/memory.py --knobs`: float32 training, "
            f"{knobs['steps']} steps, one run each; \"same losses\": every step's loss equals the "
            "default run's):", "", "| environment | peak MiB | vs default | same losses |",
            "|---|---|---|---|"]
  for r in knobs["runs"]:
    env = " ".join(f"`{k}={os.path.basename(v)}`" for k, v in r["env"].items()) or "default"
    lines.append(f"| {env} | {r['peak_mib']:,.0f} | {r['peak_vs_default']:.2f}x | "
                 f"{'yes' if r['same_losses_as_default'] else 'no'} |")
  lines += ["", f"The opt-in environment (the third row of the first table: "
            + " ".join(f"`{k}={v}`" for k, v in lean["env"].items())
            + f") peaks at {lean['peak_mib']:,.0f} MiB, {lean['peak_mib'] / yard_peak:.2f}x the "
            f"yardstick's, and its RSS between steps falls to {lean['phases'][-1]['rss_end_mib']:,.0f}"
            f" MiB; its median step in these runs took {lean['step_s_median_after_first']:.2f} s "
            f"against {f32['step_s_median_after_first']:.2f} s (the machine was shared with other "
            "jobs: indicative only)."]
  return "\n".join(lines) + "\n"


BLOCKS: Dict[str, Callable[[], str]] = {
    "two_commands": two_commands, "train_speed": train_speed, "sample_speed": sample_speed,
    "roofline": roofline, "paired_speed": paired_speed, "sample_tracking": sample_tracking,
    "input_speed": input_speed, "serve_speed": serve_speed, "serve_memory": serve_memory,
    "precision_tracking": precision_tracking, "own_videos": own_videos, "memory": memory,
    "attribution": attribution,
}


def rendered(text: str) -> str:
  """`text` with every bench block re-rendered."""
  return BLOCK.sub(lambda m: f"<!-- bench:{m.group(1)} -->\n{BLOCKS[m.group(1)]()}"
                             f"<!-- /bench:{m.group(1)} -->", text)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--write", action="store_true", help="rewrite the README's blocks")
  parser.add_argument("--readme", default=README)
  args = parser.parse_args()
  text = open(args.readme).read()
  found = {m.group(1) for m in BLOCK.finditer(text)}
  missing = sorted(set(BLOCKS) - found)
  if missing:
    sys.exit(f"error: {args.readme} lacks the blocks {missing}")
  new = rendered(text)
  if args.write:
    with open(args.readme, "w") as f:
      f.write(new)
    print(f"rewrote {len(found)} blocks of {args.readme}")
  elif new != text:
    sys.exit(f"error: {args.readme} differs from bench/results/ (python bench/report.py --write)")
  else:
    print(f"{args.readme}: {len(found)} blocks match bench/results/")


if __name__ == "__main__":
  main()
