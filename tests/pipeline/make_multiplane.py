# Writes one Enhanced MR Image instance whose frames lie in three planes (axial, sagittal,
# coronal), from single-frame MR slices of one series (the sample MR): each plane
# gets `per_plane` frames, its pixels those of successive slices, its geometry made up.
#   make_multiplane.py OUT.dcm PER_PLANE SLICE.dcm...
# SPDX-License-Identifier: GPL-3.0-or-later
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out, per_plane, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
slices = [pydicom.dcmread(f) for f in files[: 3 * per_plane]]
if len(slices) < 3 * per_plane:
    sys.exit(f"make_multiplane.py: needs {3 * per_plane} slices, got {len(slices)}")
first = slices[0]
ds = Dataset()
for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID",
                "BodyPartExamined", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
    if keyword in first:
        setattr(ds, keyword, first.data_element(keyword).value)
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
ds.SOPInstanceUID = generate_uid()
ds.SeriesInstanceUID = generate_uid()
ds.Modality = "MR"
ds.SeriesNumber = 77
ds.InstanceNumber = 1
ds.SeriesDescription = first.SeriesDescription + " (3 planes)"
ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
ds.ContentQualification = "PRODUCT"
ds.NumberOfFrames = 3 * per_plane
shared = Dataset()
measures = Dataset()
measures.PixelSpacing = list(first.PixelSpacing)
measures.SliceThickness = first.get("SliceThickness", 5)
shared.PixelMeasuresSequence = Sequence([measures])
ds.SharedFunctionalGroupsSequence = Sequence([shared])
planes = [([1, 0, 0, 0, 1, 0], 2), ([0, 1, 0, 0, 0, -1], 0), ([1, 0, 0, 0, 0, -1], 1)]  # cosines, normal axis
frames = []
for p, (cosines, axis) in enumerate(planes):
    for k in range(per_plane):
        item = Dataset()
        position = [-100.0, -100.0, 50.0]
        position[axis] += 5.0 * k
        plane_position = Dataset()
        plane_position.ImagePositionPatient = position
        item.PlanePositionSequence = Sequence([plane_position])
        orientation = Dataset()
        orientation.ImageOrientationPatient = cosines
        item.PlaneOrientationSequence = Sequence([orientation])
        content = Dataset()
        content.DimensionIndexValues = [p + 1, k + 1]
        item.FrameContentSequence = Sequence([content])
        frames.append(item)
ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
ds.PixelData = np.stack([s.pixel_array for s in slices]).astype(first.pixel_array.dtype).tobytes()
ds.file_meta = Dataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.is_little_endian, ds.is_implicit_VR = True, False
ds.save_as(out, write_like_original=False)
