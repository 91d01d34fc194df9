#!/usr/bin/python3
# Cross-check of a written SEG with pydicom (an independent reader): pydicom's own pixel_array
# decoding of the frames must equal the masks in EXPECTED.json (the format of check_seg.js).
#   /usr/bin/python3 check_seg_pydicom.py SEG.dcm EXPECTED.json
# Prints "OK ..." and exits 0, or prints the differences and exits 1.
# SPDX-License-Identifier: GPL-3.0-or-later
import json
import sys

import numpy as np
import pydicom


def main():
    seg = pydicom.dcmread(sys.argv[1])
    expected = json.load(open(sys.argv[2]))
    problems = []
    rows, columns = seg.Rows, seg.Columns
    frames = int(seg.NumberOfFrames)
    pixels = np.asarray(seg.pixel_array).reshape(frames, rows * columns)
    if seg.SegmentationType == "BINARY":
        # Also decode the bits without pydicom's handler: LSB first, frames back to back.
        bits = np.unpackbits(np.frombuffer(seg.PixelData, dtype=np.uint8), bitorder="little")
        raw = bits[: frames * rows * columns].reshape(frames, rows * columns)
        if not np.array_equal(raw, pixels):
            problems.append("pydicom's pixel_array differs from the raw bit unpacking")
    elif seg.SegmentationFractionalType == "OCCUPANCY":
        # A thresholded mask stored as bytes: only 0 and the maximum (what OHIF can draw).
        maximum = int(seg.MaximumFractionalValue)
        others = np.count_nonzero((pixels != 0) & (pixels != maximum))
        if maximum != 255 or others:
            problems.append("FRACTIONAL OCCUPANCY: maximum %d, %d values other than 0 and it" % (maximum, others))
    want = {}
    for s in expected["segments"]:
        for f in s["frames"]:
            mask = np.zeros(rows * columns, dtype=bool)
            for start, length in f["runs"]:
                mask[start : start + length] = True
            want[(s["number"], f["sop"], f.get("frame", 0) or 0)] = mask
    seen = set()
    for k, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        frame = int(getattr(source, "ReferencedFrameNumber", 0) or 0)
        key = (number, source.ReferencedSOPInstanceUID, frame)
        seen.add(key)
        mask = want.get(key, np.zeros(rows * columns, dtype=bool))
        got = pixels[k] > 0
        if not np.array_equal(got, mask):
            wrong = np.flatnonzero(got != mask)
            problems.append(
                "frame %d %s: %d pixels differ, first at (%d, %d)"
                % (k + 1, key, wrong.size, wrong[0] % columns, wrong[0] // columns)
            )
    for key in want:
        if key not in seen:
            problems.append("no frame for %s" % (key,))
    if problems:
        print("\n".join(problems))
        return 1
    print("OK %d frames of %dx%d read by pydicom %s" % (frames, columns, rows, pydicom.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
