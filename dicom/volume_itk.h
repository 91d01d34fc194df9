// A Volume as an ITK image (origin, spacing, direction carried over), for code that wants ITK
// filters. Kept out of volume.h so that users of dicom/ need not see ITK.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <itkImage.h>

#include "dicom/volume.h"

namespace unibiomed::dicom {

using ItkVolume = itk::Image<float, 3>;

ItkVolume::Pointer to_itk_image(const Volume& volume);

}  // namespace unibiomed::dicom
