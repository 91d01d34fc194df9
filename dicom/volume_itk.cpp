// Volume -> itk::Image<float, 3>.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/volume_itk.h"

#include <algorithm>

namespace unibiomed::dicom {

ItkVolume::Pointer to_itk_image(const Volume& volume) {
  auto image = ItkVolume::New();
  ItkVolume::RegionType region;
  ItkVolume::SizeType size;
  for (unsigned d = 0; d < 3; ++d) size[d] = itk::SizeValueType(volume.size[d]);
  region.SetSize(size);
  image->SetRegions(region);
  ItkVolume::SpacingType spacing;
  ItkVolume::PointType origin;
  ItkVolume::DirectionType direction;
  for (unsigned d = 0; d < 3; ++d) {
    spacing[d] = volume.spacing[d];
    origin[d] = volume.origin[d];
    for (unsigned c = 0; c < 3; ++c) direction[d][c] = volume.direction[d * 3 + c];
  }
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  image->Allocate();
  std::copy(volume.voxels.begin(), volume.voxels.end(), image->GetBufferPointer());
  return image;
}

}  // namespace unibiomed::dicom
