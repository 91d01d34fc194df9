# Reference text from pydicom (an independent decoder of DICOM character sets) for the
# text_encoding tests.
#   text_reference.py OUT FILE...
# Writes one JSON object to OUT: {file: {path: text}} with every PN, SH, LO, ST, LT, UT and UC value
# of every item, decoded by pydicom with the Specific Character Set in force there. A path is
# "(GGGG,EEEE)" per level, "[k]" for the k-th item of a sequence; multiple values are joined
# with "\", and every value is stripped of surrounding spaces.
# SPDX-License-Identifier: GPL-3.0-or-later
import json
import sys
import warnings

import pydicom

warnings.simplefilter("ignore")
TEXT_VRS = {"PN", "SH", "LO", "ST", "LT", "UT", "UC"}


def text_of(value):
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v).strip(" ") for v in value)
    return str(value).strip(" ")


def walk(ds, prefix, out):
    for element in ds:
        path = f"{prefix}({element.tag.group:04X},{element.tag.element:04X})"
        if element.VR == "SQ":
            for k, item in enumerate(element.value):
                walk(item, f"{path}[{k}]", out)
        elif element.VR in TEXT_VRS and element.value not in (None, ""):
            text = text_of(element.value)
            if text:
                out[path] = text


result = {}
for name in sys.argv[2:]:
    ds = pydicom.dcmread(name)
    ds.decode()
    values = {}
    walk(ds, "", values)
    result[name] = values
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(result, f, ensure_ascii=False)
