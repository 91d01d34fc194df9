// Why a series is analysed without measurements: its geometry attributes are there but are not
// numbers (PixelSpacing "abc") or, for sizes, not positive ("0\0"), which dicom/ reads as
// absent; or ultrasound regions that state no usable scale; or, in a CT or MR series, they are
// missing from every image, as is any scale from every radiograph or ultrasound image of a
// series. Said per series in its notes, so that the summary and the study record explain the
// missing sizes.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>
#include <vector>

#include "dicom/series.h"

namespace unibiomed::pipeline {

// One line per attribute that some instance carries but that could not be read, e.g.
// "series 1.2.3: no measurements: PixelSpacing is not a number ('abc')", and one per geometry a
// series lacks altogether; empty when none.
std::vector<std::string> geometry_notes(const dicom::Series& series);

}  // namespace unibiomed::pipeline
