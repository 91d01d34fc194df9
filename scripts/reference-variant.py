#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Derives a shorter-video variant of the reference set (tests/reference/README.md).

    scripts/reference-variant.py [--frames K] REFERENCE_DIR OUTPUT_DIR

OUTPUT_DIR gets every file of REFERENCE_DIR as a symbolic link, except video.safetensors,
video.json and manifest.json, which are rewritten for a video of the first K frames (K >= 5,
default 7, at most the reference's N). The model tests then read it through
UNIBIOMED_REFERENCE_DIR=OUTPUT_DIR, so they run on another frame count without a new run of
the original code.

Why the first K frames of the reference's N-frame run are EXACTLY what the original code gives
for a K-frame video (nothing is recomputed, every number is copied):

- Tracking is forward only, from frame 0: conditioning frames first, then frames in order. Frame
  t reads the conditioning frames (all below min(5, N)) and memories and object pointers of
  earlier frames only, so frame t depends on frames <= t and nothing after it.
- The language model sees only the first min(5, N) frames; with K >= 5 those are the same five
  frames, so the prompt, the generated ids, the [SEG] hidden states and the language embeddings
  are the same.
- The memory window (num_maskmem) counts back from t and does not depend on N. The object-pointer
  window is t_diff < min(N, 16): for N <= 16 every past frame lies within it; more generally a
  frame t < K only has t_diff <= t < K, so min(K, 16) and min(N, 16) admit the same pointers.
- The SAM2 image features, pre-processing and the final resizes are per frame.

So per-frame tensors (leading dimension N: frames_rgb_u8, seg<k>.best_iou_index, final_mask_bool,
final_mask_logits_orig_res, ious, maskmem_features_bf16_as_f32, obj_ptr, obj_ptr_proj_out,
object_score_logits, pred_masks_lowres) are cut to K along that dimension; the detail tensors
*.frame<T>.* with T >= K are dropped; video.json's frame count, frame lists and per-frame lists
are cut to match. A tensor this script does not know stops it (exit 1) rather than guess. Python
standard library only.
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys

PER_FRAME = {  # names of the tensors with one row per frame (after "seg<k>." where it applies)
    "best_iou_index", "final_mask_bool", "final_mask_logits_orig_res", "ious",
    "maskmem_features_bf16_as_f32", "obj_ptr", "obj_ptr_proj_out", "object_score_logits",
    "pred_masks_lowres",
}
NOT_PER_FRAME = {  # known tensors without a frame dimension
    "generated_ids", "mllm_pixel_values", "prefill_position_ids", "prompt_input_ids",
    "seg_embeddings_text_hidden_fcs", "seg_hidden_states", "step_last_logits",
    "seg*.language_embd", "seg*.maskmem_pos_enc",
}
DETAIL = re.compile(r"^(?:seg\d+\.)?(?:[A-Za-z_]+\.)?frame(\d+)(?:\.|$)")  # seg0.frame5.x, sam_input.frame0
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4,
               "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
DETAIL_FRAMES_KEY = "detail_frames_(vision_feat, pix_feat_with_mem, memattn inputs, video_res_mask_logits)"


def fail(message):
    sys.exit("reference-variant.py: " + message)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header, data[8 + n:]


def write_safetensors(path, metadata, tensors):
    """tensors: list of (name, dtype, shape, bytes) in file order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # data starts 8-byte aligned (spaces allowed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, raw in tensors:
            f.write(raw)


def kind_of(name):
    """'frame', ('detail', T) or 'other' for a tensor name; fails on an unknown one."""
    m = DETAIL.match(name)
    if m:
        return ("detail", int(m.group(1)))
    seg = re.match(r"^seg\d+\.(.+)$", name)
    if name == "frames_rgb_u8" or (seg and seg.group(1) in PER_FRAME):
        return "frame"
    if name in NOT_PER_FRAME or (seg and "seg*." + seg.group(1) in NOT_PER_FRAME):
        return "other"
    fail("tensor %r of video.safetensors is not known to be per frame or not; teach this script" % name)


def cut_safetensors(src, dst, n, k):
    header, data = read_safetensors(src)
    metadata = header.pop("__metadata__", None)
    out = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        raw, shape = data[begin:end], list(info["shape"])
        kind = kind_of(name)
        if kind == "frame":
            if not shape or shape[0] != n:
                fail("%s has shape %s, expected a leading dimension of %d frames" % (name, shape, n))
            row = len(raw) // n
            if row * n != len(raw) or len(raw) != DTYPE_BYTES[info["dtype"]] * prod(shape):
                fail("%s: %d bytes do not fit shape %s" % (name, len(raw), shape))
            raw, shape = raw[:row * k], [k] + shape[1:]
        elif kind != "other" and kind[1] >= k:
            continue
        out.append((name, info["dtype"], shape, raw))
    if metadata is not None:
        metadata = dict(metadata)
        metadata["variant"] = "first %d of %d frames (scripts/reference-variant.py)" % (k, n)
    write_safetensors(dst, metadata, out)
    return {name: shape for name, _, shape, _ in out}


def prod(shape):
    p = 1
    for s in shape:
        p *= s
    return p


def cut_record(rec, n, k):
    frames = rec["frames"]
    if frames["N"] != n:
        fail("video.json frames.N = %s but frames_rgb_u8 has %d frames" % (frames["N"], n))
    frames["N"] = k
    for key in (DETAIL_FRAMES_KEY, "memory_encoder_detail_frames", "conditioning_frames", "propagated_frames",
                "processing_order"):
        rec[key] = [t for t in rec[key] if t < k]
    rec["per_seg_per_frame"] = [[e for e in seg if e["frame"] < k] for seg in rec["per_seg_per_frame"]]
    for key in list(rec):
        if key.endswith("_per_seg_per_frame") and key != "per_seg_per_frame":
            for seg in rec[key]:
                if len(seg) != n:
                    fail("video.json %s has a list of %d, not %d frames" % (key, len(seg), n))
            rec[key] = [seg[:k] for seg in rec[key]]
    rec["variant"] = {
        "of_frames": n,
        "kept_frames": k,
        "by": "scripts/reference-variant.py: the first K frames of the N-frame run (exact: tracking is "
              "forward only, the language model sees the first min(5,N) frames, every pointer of a frame "
              "t < K has t_diff <= t); independent_checks and notes still describe the N-frame run",
    }
    return rec


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=7, help="frames to keep, K >= 5 (default 7)")
    parser.add_argument("reference", help="the reference folder (tests/reference)")
    parser.add_argument("output", help="the folder to write (created; must be empty if it exists)")
    args = parser.parse_args()
    src, dst, k = os.path.abspath(args.reference), os.path.abspath(args.output), args.frames
    for name in ("video.safetensors", "video.json", "manifest.json"):
        if not os.path.isfile(os.path.join(src, name)):
            fail("%s has no %s" % (src, name))
    header, _ = read_safetensors(os.path.join(src, "video.safetensors"))
    n = header["frames_rgb_u8"]["shape"][0]
    if k < 5 or k > n:
        fail("--frames must be between 5 and the reference's %d frames, not %d" % (n, k))
    os.makedirs(dst, exist_ok=True)
    if os.listdir(dst):
        fail("%s is not empty" % dst)

    for name in sorted(os.listdir(src)):
        if name not in ("video.safetensors", "video.json", "manifest.json"):
            os.symlink(os.path.join(src, name), os.path.join(dst, name))

    shapes = cut_safetensors(os.path.join(src, "video.safetensors"), os.path.join(dst, "video.safetensors"), n, k)
    with open(os.path.join(src, "video.json"), encoding="utf-8") as f:
        rec = cut_record(json.load(f), n, k)
    with open(os.path.join(dst, "video.json"), "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")

    # The manifest describes the rewritten files (size, sha256, the tensors and their shapes).
    with open(os.path.join(src, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    files = manifest["files"]
    for name in ("video.safetensors", "video.json"):
        path = os.path.join(dst, name)
        if name in files:
            files[name]["bytes"] = os.path.getsize(path)
            files[name]["sha256"] = sha256(path)
    tensors = files.get("video.safetensors", {}).get("tensors")
    if tensors is not None:
        files["video.safetensors"]["tensors"] = {
            name: dict(info, shape=shapes[name]) for name, info in tensors.items() if name in shapes}
    manifest["variant"] = rec["variant"]
    with open(os.path.join(dst, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("%s: the first %d of %d frames of %s" % (dst, k, n, src))


if __name__ == "__main__":
    main()
