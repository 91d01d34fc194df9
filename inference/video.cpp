// SPDX-License-Identifier: GPL-3.0-or-later
// Video / volume mode (SAM2 memory propagation). Placeholder until the implementation lands.
#include <torch/torch.h>

#include "inference/error.h"
#include "inference/grounded_model.h"

namespace unibiomed::inference {

struct EncodedVideo::State {
  int frames = 0, width = 0, height = 0;
};

EncodedVideo::EncodedVideo(std::unique_ptr<State> state) : state_(std::move(state)) {}
EncodedVideo::~EncodedVideo() = default;
int EncodedVideo::frames() const { return state_->frames; }
int EncodedVideo::width() const { return state_->width; }
int EncodedVideo::height() const { return state_->height; }

std::shared_ptr<const EncodedVideo> GroundedModel::encode_video(const std::vector<RgbImage>&,
                                                                const std::atomic<bool>*) const {
  throw InferenceError("video mode is not implemented yet");
}

VideoAnswer GroundedModel::answer_video(const EncodedVideo&, const std::string&, const VideoOptions&) const {
  throw InferenceError("video mode is not implemented yet");
}

}  // namespace unibiomed::inference
