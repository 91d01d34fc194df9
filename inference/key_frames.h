// The key frames of a video (the frames its language model sees): `count` frames spread evenly
// from the first of `frames` to the last (one: the middle), fewer when the video is shorter.
// The node picks them so for a series (pipeline video_key_frames, within a rule's slice range),
// and the demo checkpoint's training and video score so for its clips and volumes. Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <vector>

namespace unibiomed::inference {

std::vector<int> evenly_spaced_key_frames(int frames, int count);

}  // namespace unibiomed::inference
