// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/weights.h"

#include <torch/cuda.h>

#include <cstring>

#include "inference/error.h"

namespace unibiomed::inference {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

ComputeOptions ComputeOptions::from_strings(const std::string& device, const std::string& dtype) {
  ComputeOptions o;
  try {
    o.device = torch::Device(device);
  } catch (const std::exception&) {
    throw InferenceError("device \"" + device + "\" is not valid (use cpu, cuda or cuda:N)");
  }
  if (o.device.is_cuda() && !torch::cuda::is_available())
    throw InferenceError("device \"" + device + "\" was asked for but this libtorch sees no CUDA device");
  if (!o.device.is_cpu() && !o.device.is_cuda())
    throw InferenceError("device \"" + device + "\" is not supported (cpu or cuda)");
  if (dtype == "auto" || dtype.empty())
    o.dtype = o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  else if (dtype == "float32" || dtype == "fp32")
    o.dtype = torch::kFloat32;
  else if (dtype == "bfloat16" || dtype == "bf16")
    o.dtype = torch::kBFloat16;
  else if (dtype == "float16" || dtype == "fp16")
    o.dtype = torch::kFloat16;
  else
    throw InferenceError("dtype \"" + dtype + "\" is not supported (auto, float32, bfloat16, float16)");
  return o;
}

torch::ScalarType to_torch(DType dtype) {
  switch (dtype) {
    case DType::F64: return torch::kFloat64;
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
  }
  throw InferenceError("unknown dtype");
}

Weights::Weights(std::shared_ptr<const Checkpoint> checkpoint, ComputeOptions options)
    : checkpoint_(std::move(checkpoint)), options_(options) {}

bool Weights::has(const std::string& name) const { return checkpoint_->find(name) != nullptr; }

std::vector<int64_t> Weights::shape_of(const std::string& name) const {
  const TensorView* v = checkpoint_->find(name);
  if (!v) throw InferenceError("checkpoint " + checkpoint_->describe() + ": missing tensor '" + name + "'");
  return v->shape;
}

const TensorView& Weights::view(const std::string& name, const std::vector<int64_t>& shape) {
  const TensorView* v = checkpoint_->find(name);
  if (!v)
    throw InferenceError("checkpoint " + checkpoint_->describe() + ": missing tensor '" + name + "' (expected shape " +
                         shape_str(shape) + ")");
  if (v->shape != shape)
    throw InferenceError("checkpoint " + v->file + ": tensor '" + name + "' has shape " + v->shape_string() +
                         ", expected " + shape_str(shape));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    used_.insert(name);
  }
  return *v;
}

torch::Tensor Weights::load(const TensorView& v, torch::ScalarType target) {
  // Copy into an owned, aligned tensor of the stored dtype (the mapping may be unaligned),
  // then convert; the file pages are released afterwards.
  torch::Tensor stored = torch::empty(v.shape, torch::TensorOptions().dtype(to_torch(v.dtype)));
  if (v.nbytes) std::memcpy(stored.data_ptr(), v.data, v.nbytes);
  checkpoint_->release(v);
  torch::Tensor out = stored.to(options_.device, target);
  return out;
}

torch::Tensor Weights::get(const std::string& name, const std::vector<int64_t>& shape) {
  const TensorView& v = view(name, shape);
  const torch::ScalarType src = to_torch(v.dtype);
  if (!torch::isFloatingType(src))
    throw InferenceError("checkpoint " + v.file + ": tensor '" + name + "' has dtype " + dtype_name(v.dtype) +
                         ", expected a floating-point weight");
  return load(v, options_.dtype);
}

torch::Tensor Weights::get_raw(const std::string& name, const std::vector<int64_t>& shape) {
  const TensorView& v = view(name, shape);
  return load(v, to_torch(v.dtype));
}

std::vector<std::string> Weights::unused(const std::vector<std::string>& ignored_prefixes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const auto& name : checkpoint_->names()) {
    if (used_.count(name)) continue;
    bool ignored = false;
    for (const auto& p : ignored_prefixes)
      if (name.rfind(p, 0) == 0) ignored = true;
    if (!ignored) out.push_back(name);
  }
  return out;
}

}  // namespace unibiomed::inference
