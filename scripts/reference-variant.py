#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Derives a shorter-video and/or shorter-answer variant of the reference set (tests/reference/README.md).

    scripts/reference-variant.py [--frames K] [--answer-tokens K] REFERENCE_DIR OUTPUT_DIR

OUTPUT_DIR gets every file of REFERENCE_DIR as a symbolic link, except the files a variant
rewrites, and manifest.json, which is rewritten to describe them (sizes, sha256, tensor shapes).
With neither option, --frames 7. The model tests then read it through
UNIBIOMED_REFERENCE_DIR=OUTPUT_DIR, so they run on another frame count or answer length without
a new run of the original code. Nothing is recomputed: every number is copied or dropped.

--frames K (5 <= K <= the reference's N) rewrites video.safetensors and video.json for a video
of the first K frames. Why the first K frames of the N-frame run are EXACTLY what the original
code gives for a K-frame video:

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
are cut to match.

--answer-tokens K rewrites e2e.json and e2e.safetensors as predict_forward would give them with
max_new_tokens = K (1 <= K <= the answer's T ids; K < 0 means T + K, so -1 drops the last id).
Why that is EXACT:

- Greedy decoding is causal: step k depends on the prompt and the ids before it only, so the
  first K steps (ids, logits, hidden states, top-2 margins) are those of the T-step run.
- It stops after K ids only if the set's own rule (eos, stop words, max_new_tokens) fires no
  earlier; the script refuses a K where eos is among the first K-1 ids or a stop word ends the
  text of fewer than K ids, since the original would then not produce K ids.
- A [SEG]'s hidden state is that of the step fed with it (get_seg_hidden_states over
  generated_ids[:-1]: manifest.json, seg_hidden_states). A [SEG] among the first K-1 ids keeps
  its hidden state, its projection and its mask (seg<k>.*: each [SEG] is its own object of the
  SAM2 batch); a [SEG] that becomes the last id has none, and neither has any cut one. Those are
  the last masks, so seg<k>.* of them are dropped and nothing is renumbered.

So generated_ids, step_last_logits and step_last_hidden_post_norm are cut to K rows,
decode_step_input_ids and decode_step_position_ids to K-1, all_last_hidden_states_concat to
N+K-1 (N prompt rows), seg_hidden_states and seg_embeddings_text_hidden_fcs to the [SEG]s that
keep a hidden state (possibly none); e2e.json gets the first K ids, their text (decoded with
tiny_vocab.json as the original's slow tokenizer does, then str.strip(); the script checks that
this reproduces the reference's own text), n_seg, the per-mask lists, the first K margins and
max_new_tokens = K. The prompt, image, vision, prefill and SAM2 image-encoder tensors are the
same for any K.

A tensor or field this script does not know stops it (exit 1) rather than guess. Python
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


# e2e.safetensors: tensors with one row per generation step, what their first dimension counts
# (T = generated ids, N = prompt rows, S = [SEG]s with a hidden state).
ANSWER_STEP_ROWS = {
    "generated_ids": "T", "step_last_logits": "T", "step_last_hidden_post_norm": "T",
    "decode_step_input_ids": "T-1", "decode_step_position_ids": "T-1",
    "all_last_hidden_states_concat": "N+T-1",
    "seg_hidden_states": "S", "seg_embeddings_text_hidden_fcs": "S",
}
# e2e.safetensors: tensors of the prompt, the image and the SAM2 image encoder, the same for any
# answer length.
ANSWER_FIXED = re.compile(
    r"^(?:backbone_fpn_after_conv_s\.\d+|image_pe|image_rgb_u8|image_token_embeds|mlp1_out|pixel_shuffle_in|"
    r"pixel_shuffle_out|pixel_values|prefill_hidden_states\.\d+|prefill_inputs_embeds|prefill_last_hidden_post_norm|"
    r"prefill_logits|prefill_position_ids|prompt_dense|prompt_input_ids|sam_input_normalized|vit_embeddings_out|"
    r"vit_last_hidden_state)$")
ANSWER_MASK = re.compile(r"^seg(\d+)\.[A-Za-z0-9_.]+$")  # one [SEG]'s SAM2 path, seg<k>.*
# e2e.json: fields with one entry per generated id / per mask, and fields that do not depend on
# the answer length.
ANSWER_JSON_PER_STEP = ("greedy_top2_margins",)
ANSWER_JSON_PER_MASK = ("mask_foreground_fraction", "mask_pixels_with_abs_logit_below_1e-3")
ANSWER_JSON_FIXED = ("prompt_text", "full_input_text", "image", "n_tiles_incl_thumbnail", "image_tokens_per_tile",
                     "eos_token_id", "stop_words", "lm_head_surgery")


class ToyTokenizer:
    """tiny_vocab.json's tokenizer, decoding as the original's slow Qwen2Tokenizer does with
    skip_special_tokens=False: a special token gives its text, a run of byte tokens (ids < 256)
    gives its bytes decoded as UTF-8 with errors="replace" (U+FFFD per maximal invalid subpart),
    any other id gives unused_ids_decode_as; no spaces are inserted."""

    def __init__(self, vocab):
        self.specials = {int(i): t for t, i in vocab["special_tokens"].items()}
        self.unused = vocab["unused_ids_decode_as"]
        if "{id}" not in self.unused:
            fail("tiny_vocab.json unused_ids_decode_as %r has no {id}" % self.unused)

    def decode(self, ids):
        out, pending = [], bytearray()
        for i in ids:
            if 0 <= i < 256:
                pending.append(i)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending = bytearray()
            out.append(self.specials[i] if i in self.specials else self.unused.replace("{id}", str(i)))
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)


def stop_after(ids, tokenizer, eos, stop_words, max_new_tokens):
    """(length, reason) where the original's greedy search stops on `ids`, or (len(ids), None) when
    it would go on: after each id, in this order, the id is eos; the decoded text with \r and \n
    removed ends with a stop word (xtuner's StopWordStoppingCriteria); max_new_tokens ids are out."""
    for k in range(1, len(ids) + 1):
        if eos is not None and ids[k - 1] == eos:
            return k, "eos"
        text = tokenizer.decode(ids[:k]).replace("\r", "").replace("\n", "")
        if any(w and text.endswith(w) for w in stop_words):
            return k, "stop_word"
        if k >= max_new_tokens:
            return k, "max_new_tokens"
    return len(ids), None


def int64_values(raw):
    return list(struct.unpack("<%dq" % (len(raw) // 8), raw))


def cut_answer(src, answer_tokens):
    """e2e.json and e2e.safetensors for max_new_tokens = K, checked before anything is written:
    returns (write, shapes, variant, T, K); write(dst) writes them."""
    with open(os.path.join(src, "e2e.json"), encoding="utf-8") as f:
        rec = json.load(f)
    with open(os.path.join(src, "tiny_vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    tokenizer = ToyTokenizer(vocab)
    header, data = read_safetensors(os.path.join(src, "e2e.safetensors"))
    metadata = header.pop("__metadata__", None)
    for key in rec:
        if key not in ("generated_ids", "prediction_text", "n_seg", "max_new_tokens") + ANSWER_JSON_PER_STEP + \
                ANSWER_JSON_PER_MASK + ANSWER_JSON_FIXED:
            fail("e2e.json field %r is not known to depend on the answer length or not; teach this script" % key)

    ids = rec["generated_ids"]
    t = len(ids)
    if "generated_ids" not in header or header["generated_ids"]["dtype"] != "I64":
        fail("e2e.safetensors has no int64 generated_ids")
    begin, end = header["generated_ids"]["data_offsets"]
    if int64_values(data[begin:end]) != ids:
        fail("e2e.safetensors generated_ids differ from e2e.json's %s" % ids)
    k = answer_tokens if answer_tokens > 0 else t + answer_tokens
    if answer_tokens == 0 or k < 1 or k > t:
        fail("--answer-tokens %d: the reference's answer has %d ids, so K must be 1..%d%s"
             % (answer_tokens, t, t, " or -%d..-1" % (t - 1) if t > 1 else ""))

    # The decoder must reproduce the reference's own text before it may write another.
    if tokenizer.decode(ids).strip() != rec["prediction_text"]:
        fail("decoding the reference's %s with tiny_vocab.json gives %r, not e2e.json's prediction_text %r"
             % (ids, tokenizer.decode(ids).strip(), rec["prediction_text"]))
    eos, stop_words, max_new = rec["eos_token_id"], rec["stop_words"], rec["max_new_tokens"]
    length, reason = stop_after(ids[:k], tokenizer, eos, stop_words, k)
    if length < k:
        fail("--answer-tokens %d: the original would stop after %d ids (%s: %s), so it cannot give %d"
             % (answer_tokens, length, reason, ids[:length], k))
    length_t, reason_t = stop_after(ids, tokenizer, eos, stop_words, max_new)
    if reason_t is None or length_t != t:
        fail("e2e.json contradicts itself: its %d ids stop after %d under eos %s, stop words %s and "
             "max_new_tokens %d" % (t, length_t, eos, stop_words, max_new))

    if "[SEG]" not in vocab["special_tokens"]:
        fail("tiny_vocab.json has no [SEG] special token")
    seg_id = vocab["special_tokens"]["[SEG]"]
    for name in list(ANSWER_STEP_ROWS) + ["prefill_inputs_embeds"]:
        if name not in header:
            fail("e2e.safetensors has no %s" % name)
    s_full, s_kept = ids[:t - 1].count(seg_id), ids[:max(k - 1, 0)].count(seg_id)
    if rec["n_seg"] != s_full:
        fail("e2e.json n_seg = %s, but %d [SEG]s (id %d) of %s have a hidden state" % (rec["n_seg"], s_full, seg_id, ids))
    n_prompt = header["prefill_inputs_embeds"]["shape"][0]
    rows_full = {"T": t, "T-1": t - 1, "N+T-1": n_prompt + t - 1, "S": s_full}
    rows_kept = {"T": k, "T-1": k - 1, "N+T-1": n_prompt + k - 1, "S": s_kept}
    masks_found = set()
    out = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        raw, shape = data[begin:end], list(info["shape"])
        if len(raw) != DTYPE_BYTES[info["dtype"]] * prod(shape):
            fail("%s: %d bytes do not fit shape %s" % (name, len(raw), shape))
        mask = ANSWER_MASK.match(name)
        if name in ANSWER_STEP_ROWS:
            rows = ANSWER_STEP_ROWS[name]
            if not shape or shape[0] != rows_full[rows]:
                fail("%s has shape %s, expected %s = %d rows" % (name, shape, rows, rows_full[rows]))
            row = DTYPE_BYTES[info["dtype"]] * prod(shape[1:])
            raw, shape = raw[:row * rows_kept[rows]], [rows_kept[rows]] + shape[1:]
        elif mask:
            masks_found.add(int(mask.group(1)))
            if int(mask.group(1)) >= s_kept:
                continue
        elif not ANSWER_FIXED.match(name):
            fail("tensor %r of e2e.safetensors is not known to depend on the answer length or not; teach this script"
                 % name)
        out.append((name, info["dtype"], shape, raw))
    if masks_found != set(range(s_full)):
        fail("e2e.safetensors has masks seg%s, but %d [SEG]s have a hidden state" % (sorted(masks_found), s_full))
    by_name = {name: raw for name, _, _, raw in out}
    if int64_values(by_name["decode_step_input_ids"]) != ids[:k - 1]:
        fail("decode_step_input_ids are not generated_ids[:-1]")
    if metadata is not None:
        metadata = dict(metadata)
        metadata["variant"] = "first %d of %d generated ids (scripts/reference-variant.py)" % (k, t)

    for key in ANSWER_JSON_PER_STEP:
        if len(rec[key]) != t:
            fail("e2e.json %s has %d entries, not one per generated id (%d)" % (key, len(rec[key]), t))
        rec[key] = rec[key][:k]
    for key in ANSWER_JSON_PER_MASK:
        if len(rec[key]) != s_full:
            fail("e2e.json %s has %d entries, not one per mask (%d)" % (key, len(rec[key]), s_full))
        rec[key] = rec[key][:s_kept]
    rec["generated_ids"] = ids[:k]
    rec["prediction_text"] = tokenizer.decode(ids[:k]).strip()
    rec["n_seg"] = s_kept
    rec["max_new_tokens"] = k
    variant = {
        "of_generated_ids": t,
        "kept_generated_ids": k,
        "stop_reason": reason,
        "by": "scripts/reference-variant.py: predict_forward with max_new_tokens = K (exact: greedy decoding is "
              "causal; a [SEG] keeps its hidden state and mask only if an id follows it); lm_head_surgery still "
              "describes the T-id run",
    }
    rec["variant"] = variant

    def write(dst):
        write_safetensors(os.path.join(dst, "e2e.safetensors"), metadata, out)
        with open(os.path.join(dst, "e2e.json"), "w", encoding="utf-8") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")

    return write, {name: shape for name, _, shape, _ in out}, variant, t, k


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, help="frames to keep, K >= 5 (the default, 7, when no option is given)")
    parser.add_argument("--answer-tokens", type=int,
                        help="generated ids to keep, K >= 1, or K < 0 for all but the last -K")
    parser.add_argument("reference", help="the reference folder (tests/reference)")
    parser.add_argument("output", help="the folder to write (created; must be empty if it exists)")
    args = parser.parse_args()
    src, dst = os.path.abspath(args.reference), os.path.abspath(args.output)
    frames = 7 if args.frames is None and args.answer_tokens is None else args.frames
    rewritten = ["manifest.json"]
    if frames is not None:
        rewritten += ["video.safetensors", "video.json"]
    if args.answer_tokens is not None:
        rewritten += ["e2e.safetensors", "e2e.json"]
    for name in rewritten + (["tiny_vocab.json"] if args.answer_tokens is not None else []):
        if not os.path.isfile(os.path.join(src, name)):
            fail("%s has no %s" % (src, name))
    if frames is not None:
        header, _ = read_safetensors(os.path.join(src, "video.safetensors"))
        n = header["frames_rgb_u8"]["shape"][0]
        if frames < 5 or frames > n:
            fail("--frames must be between 5 and the reference's %d frames, not %d" % (n, frames))
    shapes, variants, said = {}, {}, []
    if args.answer_tokens is not None:
        write_answer, shapes["e2e.safetensors"], variants["e2e.json"], t, k = cut_answer(src, args.answer_tokens)
        said.append("the first %d of %d generated ids" % (k, t))
    if os.path.isdir(dst) and os.listdir(dst):
        fail("%s is not empty" % dst)
    os.makedirs(dst, exist_ok=True)
    if args.answer_tokens is not None:
        write_answer(dst)
    if frames is not None:
        shapes["video.safetensors"] = cut_safetensors(
            os.path.join(src, "video.safetensors"), os.path.join(dst, "video.safetensors"), n, frames)
        with open(os.path.join(src, "video.json"), encoding="utf-8") as f:
            rec = cut_record(json.load(f), n, frames)
        with open(os.path.join(dst, "video.json"), "w", encoding="utf-8") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
        variants["video.json"] = rec["variant"]
        said.append("the first %d of %d frames" % (frames, n))
    for name in sorted(os.listdir(src)):
        if name not in rewritten:
            os.symlink(os.path.join(src, name), os.path.join(dst, name))

    # The manifest describes the rewritten files (size, sha256, the tensors and their shapes).
    with open(os.path.join(src, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    files = manifest["files"]
    for name in rewritten:
        path = os.path.join(dst, name)
        if name != "manifest.json" and name in files:
            files[name]["bytes"] = os.path.getsize(path)
            files[name]["sha256"] = sha256(path)
    for name, kept in shapes.items():
        tensors = files.get(name, {}).get("tensors")
        if tensors is not None:
            files[name]["tensors"] = {t: dict(info, shape=kept[t]) for t, info in tensors.items() if t in kept}
    margins = manifest.get("notes", {}).get("greedy_margins", {})
    if "e2e.json" in variants and "e2e_top1_minus_top2_per_step" in margins:
        margins["e2e_top1_minus_top2_per_step"] = margins["e2e_top1_minus_top2_per_step"][:k]
    manifest["variant"] = variants
    with open(os.path.join(dst, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("%s: %s of %s" % (dst, " and ".join(said), src))


if __name__ == "__main__":
    main()
