#!/usr/bin/python3
# Reads a tiled slide SEG with pydicom, independently of the writer: every frame placed by its
# PlanePositionSlideSequence into a total pixel matrix per segment, compared with the expected
# masks (raw bytes, TotalPixelMatrixRows x Columns per segment, segment by segment), and the
# slide position of every frame checked against the origin, orientation and pixel spacing.
#   /usr/bin/python3 check_slide_seg.py SEG.dcm EXPECTED.raw SEGMENTS
# Prints "OK ..." and exits 0, or prints the problems and exits 1.
# SPDX-License-Identifier: GPL-3.0-or-later
import sys

import numpy as np
import pydicom


def main():
    seg = pydicom.dcmread(sys.argv[1])
    segments = int(sys.argv[3])
    rows, columns = int(seg.TotalPixelMatrixRows), int(seg.TotalPixelMatrixColumns)
    expected = np.fromfile(sys.argv[2], dtype=np.uint8).reshape(segments, rows, columns)
    problems = []
    if seg.DimensionOrganizationType != "TILED_SPARSE":
        problems.append("DimensionOrganizationType " + str(seg.DimensionOrganizationType))
    frames = np.asarray(seg.pixel_array).reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    got = np.zeros_like(expected)
    origin = seg.TotalPixelMatrixOriginSequence[0]
    ox, oy = float(origin.XOffsetInSlideCoordinateSystem), float(origin.YOffsetInSlideCoordinateSystem)
    o = [float(v) for v in seg.ImageOrientationSlide]
    dy, dx = [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    seen = set()
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        s = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        p = item.PlanePositionSlideSequence[0]
        c, r = int(p.ColumnPositionInTotalImagePixelMatrix) - 1, int(p.RowPositionInTotalImagePixelMatrix) - 1
        if (s, c, r) in seen:
            problems.append("frame %d repeats segment %d at %d,%d" % (k + 1, s, c, r))
        seen.add((s, c, r))
        h, w = min(seg.Rows, rows - r), min(seg.Columns, columns - c)
        got[s - 1, r:r + h, c:c + w] |= frames[k, :h, :w]
        if frames[k].max() == 0:
            problems.append("frame %d is empty (TILED_SPARSE leaves those out)" % (k + 1))
        x = ox + o[0] * c * dx + o[3] * r * dy
        y = oy + o[1] * c * dx + o[4] * r * dy
        if abs(float(p.XOffsetInSlideCoordinateSystem) - x) > 1e-6 or abs(float(p.YOffsetInSlideCoordinateSystem) - y) > 1e-6:
            problems.append("frame %d at %s,%s on the slide, expected %f,%f" % (
                k + 1, p.XOffsetInSlideCoordinateSystem, p.YOffsetInSlideCoordinateSystem, x, y))
        index = [int(v) for v in item.FrameContentSequence[0].DimensionIndexValues]
        if index != [s, c // seg.Columns + 1, r // seg.Rows + 1]:
            problems.append("frame %d dimension index values %s" % (k + 1, index))
    for s in range(segments):
        diff = int(np.count_nonzero(got[s] != expected[s]))
        if diff:
            problems.append("segment %d: %d pixels differ" % (s + 1, diff))
    if problems:
        print("\n".join(problems[:20]))
        return 1
    print("OK %d frames, %d segments on %dx%d" % (len(seen), segments, columns, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
