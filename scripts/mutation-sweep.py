#!/usr/bin/python3
# The sample studies with one fault each, through `unibiomed analyze` and `dicom inspect`: what
# archives send that the node must survive (values that break their VR, UIDs with leading zeros,
# sizes of zero, slices that cannot be decoded, truncated and damaged files, lying transfer
# syntaxes, broken slide levels, enhanced multi-frame images with broken functional groups).
# Every case ends in results or in an error that names the culprit; this script checks that none
# crashes or hangs and that every written SEG and SR passes
# dciodvfy, apart from errors about the source's own invalid UIDs, which the results must repeat
# (the objects of randomly damaged headers are not checked: their damage is such values).
#
#   /usr/bin/python3 scripts/mutation-sweep.py [--build build] [--model samples/demo-checkpoint]
#       [--out /tmp/unibiomed-sweep] [--seed 0] [--jobs 2] [--only NAME ...]
#
# --seed 0 puts the fault into every file of a series, --seed 1 (odd seeds) into one file of it.
# Prints one line per outcome kind and a table per fault; exits 1 when a case crashed, timed out
# or wrote an object that dciodvfy rejects for another reason. Needs pydicom (python3-pydicom)
# and dciodvfy (dicom3tools). Takes about 8 minutes on 2 cores (427 cases).
# SPDX-License-Identifier: GPL-3.0-or-later
import argparse
import collections
import concurrent.futures
import copy
import glob
import os
import random
import shutil
import subprocess
import sys
import warnings

import pydicom

warnings.simplefilter("ignore", UserWarning)  # pydicom warns about the invalid values written on purpose


def put(name, value):
    return lambda ds: setattr(ds, name, value)


def drop(name):
    return lambda ds: delattr(ds, name) if name in ds else None


def with_leading_zero(ds):
    for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        if name in ds:
            setattr(ds, name, "1.2.840.0123." + getattr(ds, name).split(".")[-1])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def shorter_pixels(ds):
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]


def slide_measures(ds):
    try:
        return ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    except (AttributeError, IndexError):
        return None


def slide_spacing_zero(ds):
    measures = slide_measures(ds)
    if measures is not None:
        measures.PixelSpacing = [0, 0]


def us_regions(change):
    """Applies `change` to the first ultrasound region (PS3.3 C.8.5.5) of an image that has one."""
    def apply(ds):
        if "SequenceOfUltrasoundRegions" in ds and len(ds.SequenceOfUltrasoundRegions):
            change(ds, ds.SequenceOfUltrasoundRegions[0])
    return apply


def second_region_at_other_depth(ds, region):
    other = copy.deepcopy(region)  # its own elements: changing them leaves the first region as it is
    other.PhysicalDeltaX = other.PhysicalDeltaY = 0.05
    ds.SequenceOfUltrasoundRegions.append(other)


# Faults of any image; each is applied with pydicom and written back as it is.
IMAGE_FAULTS = {
    "age-without-unit": put("PatientAge", "45Y"),
    "date-not-a-date": put("StudyDate", "20241399"),
    "time-with-colons": put("StudyTime", "10:20:30"),
    "sex-as-word": put("PatientSex", "male"),
    "name-with-control-bytes": put("PatientName", b"\xff\xfe\x00\x01abc"),
    "uids-with-leading-zeros": with_leading_zero,
    "study-uid-too-long": put("StudyInstanceUID", "1.2." + "3" * 80),
    "sop-uid-not-a-uid": put("SOPInstanceUID", "not.a.uid..x"),
    "sop-uid-missing": drop("SOPInstanceUID"),
    "study-uid-missing": drop("StudyInstanceUID"),
    "series-uid-missing": drop("SeriesInstanceUID"),
    "sop-class-unknown": put("SOPClassUID", "1.2.3.4.5"),
    "modality-missing": drop("Modality"),
    "localizer": lambda ds: (setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]),
                             setattr(ds, "InstanceNumber", 0)),
    "rows-zero": put("Rows", 0),
    "columns-65535": put("Columns", 65535),
    "bits-allocated-12": put("BitsAllocated", 12),
    "bits-stored-20": put("BitsStored", 20),
    "high-bit-3": put("HighBit", 3),
    "samples-per-pixel-4": put("SamplesPerPixel", 4),
    "photometric-missing": put("PhotometricInterpretation", ""),
    "palette-without-table": put("PhotometricInterpretation", "PALETTE COLOR"),
    "frames-zero": put("NumberOfFrames", 0),
    "frames-100000": put("NumberOfFrames", 100000),
    "pixel-spacing-zero": put("PixelSpacing", [0, 0]),
    "pixel-spacing-nan": put("PixelSpacing", ["nan", "1"]),
    "pixel-spacing-1e308": put("PixelSpacing", ["1e308", "1e308"]),
    "imager-spacing-finer": put("ImagerPixelSpacing", [0.15, 0.15]),
    "magnification-factor-zero": put("EstimatedRadiographicMagnificationFactor", 0),
    "us-regions-disagree": us_regions(second_region_at_other_depth),
    "us-region-delta-nan": us_regions(lambda ds, region: setattr(region, "PhysicalDeltaX", float("nan"))),
    "us-region-units-missing": us_regions(lambda ds, region: delattr(region, "PhysicalUnitsXDirection")),
    "us-region-beyond-image": us_regions(lambda ds, region: setattr(region, "RegionLocationMaxX1", 0xFFFFFFFF)),
    "us-region-inverted": us_regions(lambda ds, region: setattr(region, "RegionLocationMinX0",
                                                                region.RegionLocationMaxX1 + 10)),
    "us-region-bound-missing": us_regions(lambda ds, region: delattr(region, "RegionLocationMaxY1")),
    "us-region-top-strip-only": us_regions(lambda ds, region: setattr(region, "RegionLocationMaxY1", 9)),
    "slice-thickness-zero": put("SliceThickness", 0),
    "orientation-zero": put("ImageOrientationPatient", [0, 0, 0, 0, 0, 0]),
    "orientation-parallel": put("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
    "position-missing": drop("ImagePositionPatient"),
    "position-beyond-1km": put("ImagePositionPatient", [0, 0, "1e300"]),
    "rescale-slope-zero": put("RescaleSlope", 0),
    "rescale-intercept-inf": put("RescaleIntercept", "inf"),
    "window-width-zero": put("WindowWidth", 0),
    "pixel-data-short": shorter_pixels,
    "pixel-data-missing": drop("PixelData"),
}

# Faults of a slide level (the sample slide's three instances: the fault in one, or in all).
SLIDE_FAULTS = {
    "slide-total-columns-missing": drop("TotalPixelMatrixColumns"),
    "slide-total-columns-zero": put("TotalPixelMatrixColumns", 0),
    "slide-sparse-without-positions": put("DimensionOrganizationType", "TILED_SPARSE"),
    "slide-label-image": put("ImageType", ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]),
    "slide-frames-halved": lambda ds: setattr(ds, "NumberOfFrames", max(1, int(ds.NumberOfFrames) // 2)),
    "slide-spacing-zero": slide_spacing_zero,
    "slide-origin-missing": drop("TotalPixelMatrixOriginSequence"),
    "slide-frame-of-reference-missing": drop("FrameOfReferenceUID"),
    "slide-orientation-zero": put("ImageOrientationSlide", [0, 0, 0, 0, 0, 0]),
    "slide-orientation-missing": drop("ImageOrientationSlide"),
}

# The sample CT and MR series rewritten as one enhanced multi-frame instance each (Enhanced CT /
# Enhanced MR Image Storage: geometry, rescale and window in functional groups), as modern
# scanners send them.
ENHANCED_SOP_CLASSES = {"ct": "1.2.840.10008.5.1.4.1.1.2.1", "mr": "1.2.840.10008.5.1.4.1.1.4.1"}


def write_enhanced(files, folder, sample):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    slices = [pydicom.dcmread(f) for f in files]
    slices.sort(key=lambda d: int(d.InstanceNumber))
    ds = slices[0].copy()

    def item(**values):
        it = Dataset()
        for k, v in values.items():
            setattr(it, k, v)
        return it

    first = slices[0]
    shared = item(PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=first.ImageOrientationPatient)]),
                  PixelMeasuresSequence=Sequence([item(PixelSpacing=first.PixelSpacing,
                                                       SliceThickness=first.SliceThickness)]))
    if "RescaleIntercept" in first:
        shared.PixelValueTransformationSequence = Sequence([item(
            RescaleIntercept=first.RescaleIntercept, RescaleSlope=first.get("RescaleSlope", 1),
            RescaleType="HU" if sample == "ct" else "US")])
    if "WindowCenter" in first:
        shared.FrameVOILUTSequence = Sequence([item(WindowCenter=first.WindowCenter, WindowWidth=first.WindowWidth)])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(PlanePositionSequence=Sequence([item(ImagePositionPatient=d.ImagePositionPatient)]),
             FrameContentSequence=Sequence([item(DimensionIndexValues=[k + 1])]))
        for k, d in enumerate(slices)])
    for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                 "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "SliceLocation"):
        if name in ds:
            delattr(ds, name)
    ds.SOPClassUID = ENHANCED_SOP_CLASSES[sample]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(slices)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.PixelData = b"".join(d.PixelData for d in slices)
    os.makedirs(folder, exist_ok=True)
    ds.save_as(os.path.join(folder, "ENHANCED.dcm"), write_like_original=False)


def groups(ds, name):
    """The items of a functional group in the shared and in every per-frame item."""
    found = []
    for outer in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for frame in ds.get(outer, []):
            found += list(frame.get(name, []))
    return found


def every(name, attribute, value):
    return lambda ds: [setattr(it, attribute, value) for it in groups(ds, name)]


def per_frame(change):
    return lambda ds: [change(frame, k) for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence)]


# Faults of an enhanced multi-frame instance's functional groups.
ENHANCED_FAULTS = {
    "enhanced-per-frame-missing": drop("PerFrameFunctionalGroupsSequence"),
    "enhanced-shared-missing": drop("SharedFunctionalGroupsSequence"),
    "enhanced-per-frame-short": lambda ds: setattr(
        ds, "PerFrameFunctionalGroupsSequence", ds.PerFrameFunctionalGroupsSequence[: len(ds.PerFrameFunctionalGroupsSequence) // 2]),
    "enhanced-frames-more-than-groups": lambda ds: setattr(ds, "NumberOfFrames", int(ds.NumberOfFrames) + 3),
    "enhanced-one-position-missing": per_frame(lambda f, k: delattr(f, "PlanePositionSequence") if k == 1 else None),
    "enhanced-positions-equal": every("PlanePositionSequence", "ImagePositionPatient", [0, 0, 0]),
    "enhanced-positions-empty": every("PlanePositionSequence", "ImagePositionPatient", None),
    "enhanced-orientation-zero": every("PlaneOrientationSequence", "ImageOrientationPatient", [0, 0, 0, 0, 0, 0]),
    "enhanced-spacing-zero": every("PixelMeasuresSequence", "PixelSpacing", [0, 0]),
    "enhanced-thickness-nan": every("PixelMeasuresSequence", "SliceThickness", "nan"),
    "enhanced-measures-empty": lambda ds: [setattr(f, "PixelMeasuresSequence", []) for f in
                                           ds.get("SharedFunctionalGroupsSequence", [])],
    "enhanced-rescale-slope-zero": every("PixelValueTransformationSequence", "RescaleSlope", 0),
    "enhanced-window-width-negative": every("FrameVOILUTSequence", "WindowWidth", -400),
    "enhanced-dimension-index-zero": every("FrameContentSequence", "DimensionIndexValues", [0]),
    "enhanced-pixel-data-one-frame-short": lambda ds: setattr(
        ds, "PixelData", ds.PixelData[: len(ds.PixelData) - len(ds.PixelData) // int(ds.NumberOfFrames)]),
}

# Faults of the file's bytes.
TRANSFER_SYNTAX_LIES = {
    "declared-rle": b"1.2.840.10008.1.2.5\0",
    "declared-implicit": b"1.2.840.10008.1.2\0\0\0",
}


def write_case(folder, files, fault, which):
    os.makedirs(folder, exist_ok=True)
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        if i in which:
            try:
                fault(ds)
            except (AttributeError, KeyError, ValueError, TypeError):
                pass
        ds.save_as(os.path.join(folder, os.path.basename(path)), write_like_original=True)


def byte_cases(out, name, files, rng):
    cases = []
    for k in range(2):
        folder = os.path.join(out, f"truncated-{k}__{name}")
        os.makedirs(folder, exist_ok=True)
        for i, path in enumerate(files):
            data = open(path, "rb").read()
            if i == 0 or k:
                data = data[: rng.randrange(0, len(data))]
            open(os.path.join(folder, os.path.basename(path)), "wb").write(data)
        cases.append(folder)
        folder = os.path.join(out, f"damaged-header-{k}__{name}")
        os.makedirs(folder, exist_ok=True)
        for path in files:
            data = bytearray(open(path, "rb").read())
            for _ in range(20):
                data[rng.randrange(128, min(len(data), 4000))] = rng.randrange(256)
            open(os.path.join(folder, os.path.basename(path)), "wb").write(bytes(data))
        cases.append(folder)
    for lie, uid in TRANSFER_SYNTAX_LIES.items():
        folder = os.path.join(out, f"{lie}__{name}")
        os.makedirs(folder, exist_ok=True)
        for path in files:
            data = open(path, "rb").read()
            at = data.find(b"1.2.840.10008.1.2.1\0", 0, 400)
            if at >= 0:
                data = data[:at] + uid + data[at + len(uid):]
            open(os.path.join(folder, os.path.basename(path)), "wb").write(data)
        cases.append(folder)
    return cases


def run_case(folder, cli, model, out):
    name = os.path.basename(folder)
    results = os.path.join(out, "results", name)
    shutil.rmtree(results, ignore_errors=True)
    try:
        analyze = subprocess.run(
            [cli, "analyze", folder, "-o", results, "--model", model, "--quiet", "--no-previews", "--threads", "1",
             "--seed", "sweep"], capture_output=True, text=True, errors="replace", timeout=600)
        analyze_rc, analyze_err = analyze.returncode, analyze.stderr + analyze.stdout
    except subprocess.TimeoutExpired:
        analyze_rc, analyze_err = "timeout", ""
    try:
        inspect_rc = subprocess.run([cli, "dicom", "inspect", folder], capture_output=True, timeout=120).returncode
    except subprocess.TimeoutExpired:
        inspect_rc = "timeout"
    rejected = []
    # Random bytes in a header land in UIDs and other values that the results must repeat: those
    # cases are checked for crashes and hangs only.
    objects = [] if name.startswith("damaged-header") else glob.glob(os.path.join(results, "**", "*.dcm"),
                                                                      recursive=True)
    for obj in sorted(objects):
        check = subprocess.run(["dciodvfy", obj], capture_output=True, text=True, errors="replace")
        for line in (check.stdout + check.stderr).splitlines():
            if not line.startswith("Error"):
                continue
            # The source's own invalid UIDs are referenced as they are: dciodvfy repeats them.
            if ("Leading zeroes" in line or "invalid data values for Value Representations" in line
                    or "not.a.uid" in line or ("Length invalid for this VR" in line and " UI " in line)):
                continue
            # A source whose SOP class is unknown cannot be known to be multi-frame.
            if name.startswith("sop-class-unknown") and "Referenced SOP Class that is not multi-frame" in line:
                continue
            rejected.append(f"{os.path.relpath(obj, results)}: {line}")
    return name, analyze_rc, inspect_rc, analyze_err, rejected


def main():
    parser = argparse.ArgumentParser(description="The sample studies with one fault each, through the node.")
    parser.add_argument("--build", default="build")
    parser.add_argument("--model", default="samples/demo-checkpoint")
    parser.add_argument("--out", default="/tmp/unibiomed-sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=[],
                        help="only the faults whose name contains this (no byte-level cases then)")
    args = parser.parse_args()
    cli = os.path.abspath(os.path.join(args.build, "cli", "unibiomed"))
    model = os.path.abspath(args.model)
    out = os.path.abspath(args.out)
    rng = random.Random(args.seed)

    shutil.rmtree(out, ignore_errors=True)
    samples = os.path.join(out, "samples")
    subprocess.run([cli, "samples", "write", samples, "--ct-slices", "6", "--ct-size", "96"], check=True,
                   capture_output=True)
    cases_dir = os.path.join(out, "cases")
    cases = []
    for sample in ENHANCED_SOP_CLASSES:
        write_enhanced(sorted(glob.glob(os.path.join(samples, sample, "*.dcm"))),
                       os.path.join(samples, sample + "-enhanced"), sample)
    for name in sorted(os.listdir(samples)):
        folder = os.path.join(samples, name)
        if not os.path.isdir(folder):
            continue
        files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
        faults = SLIDE_FAULTS if name == "wsi" else IMAGE_FAULTS
        if name.endswith("-enhanced"):
            faults = {**IMAGE_FAULTS, **ENHANCED_FAULTS}
        for fault_name, fault in faults.items():
            if args.only and not any(o in fault_name for o in args.only):
                continue
            which = set(range(len(files))) if args.seed % 2 == 0 or len(files) == 1 else {rng.randrange(len(files))}
            case = os.path.join(cases_dir, f"{fault_name}__{name}")
            write_case(case, files, fault, which)
            cases.append(case)
        if name != "wsi" and not args.only:
            cases += byte_cases(cases_dir, name, files, rng)

    outcomes = collections.Counter()
    per_fault = collections.defaultdict(list)
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, analyze_rc, inspect_rc, err, rejected in pool.map(lambda c: run_case(c, cli, model, out), cases):
            fault, sample = name.split("__")
            outcomes[f"analyze exit {analyze_rc}"] += 1
            per_fault[fault].append(f"{sample}:{analyze_rc}/{inspect_rc}")
            crashed = [rc for rc in (analyze_rc, inspect_rc) if rc == "timeout" or rc < 0 or rc >= 126]
            if crashed or "terminate called" in err:
                problems.append(f"{name}: crashed or hung (analyze {analyze_rc}, inspect {inspect_rc})")
            problems += [f"{name}: {r}" for r in rejected]
    print(f"{len(cases)} cases from {len(per_fault)} faults (seed {args.seed}), results in {out}/results")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    print("per fault, sample:analyze exit/inspect exit (0 done, 1 failed with the reason, 3 no usable input, "
          "5 some series failed):")
    for fault in sorted(per_fault):
        print(f"  {fault}: {' '.join(sorted(per_fault[fault]))}")
    for p in problems:
        print("PROBLEM " + p)
    print(f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
