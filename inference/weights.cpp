// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/weights.h"

#include <torch/cuda.h>

#include <cstring>

#include "inference/error.h"
#include "inference/runtime.h"

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
  if (o.device.is_cuda() && o.device.has_index() &&
      static_cast<size_t>(o.device.index()) >= torch::cuda::device_count())
    throw InferenceError("device \"" + device + "\" was asked for but this machine has " +
                         std::to_string(torch::cuda::device_count()) + " CUDA device(s) (cuda:0 ...)");
  if (!o.device.is_cpu() && !o.device.is_cuda())
    throw InferenceError("device \"" + device + "\" is not supported (cpu or cuda)");
  if (dtype == "auto" || dtype.empty())
    o.dtype = auto_dtype(o.device);
  else if (dtype == "float32" || dtype == "fp32")
    o.dtype = torch::kFloat32;
  else if (dtype == "bfloat16" || dtype == "bf16")
    o.dtype = torch::kBFloat16;
  else if (dtype == "float16" || dtype == "fp16")
    o.dtype = torch::kFloat16;
  else
    throw InferenceError("dtype \"" + dtype + "\" is not supported (auto, float32, bfloat16, float16)");
  if (o.device.is_cpu() && o.dtype != torch::kFloat32) {
    // libtorch 1.13 has no float16 matrix product on the CPU; newer versions do. Asked rather
    // than assumed, so that the answer is one clear line here and not an error deep in a layer.
    try {
      const auto a = torch::ones({2, 2}, torch::TensorOptions().dtype(o.dtype));
      (void)torch::addmm(a, a, a);
    } catch (const c10::Error&) {
      throw InferenceError("dtype \"" + dtype + "\" cannot run on the CPU with this libtorch (it has no " +
                           std::string(c10::toString(o.dtype)) + " matrix product there): use float32 or bfloat16");
    }
  }
  return o;
}

torch::ScalarType ComputeOptions::auto_dtype(const torch::Device& device) {
  return device.is_cuda() || cpu_has_native_bfloat16() ? torch::kBFloat16 : torch::kFloat32;
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

Weights::Weights(std::map<std::string, torch::Tensor> tensors, ComputeOptions options)
    : checkpoint_(std::make_shared<Checkpoint>()), options_(options), in_memory_(true) {
  for (const auto& [name, t] : tensors) memory_shapes_[name] = t.sizes().vec();
  memory_ = std::move(tensors);
}

std::string Weights::describe() const { return in_memory_ ? std::string("in-memory weights") : checkpoint_->describe(); }

torch::Tensor Weights::take(const std::string& name, const std::vector<int64_t>& shape, bool convert) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto known = memory_shapes_.find(name);
  if (known == memory_shapes_.end())
    throw InferenceError("in-memory weights: missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
  if (known->second != shape)
    throw InferenceError("in-memory weights: tensor '" + name + "' has shape " + shape_str(known->second) +
                         ", expected " + shape_str(shape));
  auto it = memory_.find(name);
  if (it == memory_.end())
    throw InferenceError("in-memory weights: tensor '" + name + "' was handed over already (in-memory tensors move into the model)");
  torch::Tensor t = std::move(it->second);
  memory_.erase(it);
  used_.insert(name);
  if (convert && !torch::isFloatingType(t.scalar_type()))
    throw InferenceError("in-memory weights: tensor '" + name + "' is not a floating-point weight");
  return t.to(options_.device, convert ? options_.dtype : t.scalar_type());
}

bool Weights::has(const std::string& name) const {
  return in_memory_ ? memory_shapes_.count(name) != 0 : checkpoint_->find(name) != nullptr;
}

std::vector<int64_t> Weights::shape_of(const std::string& name) const {
  if (in_memory_) {
    auto it = memory_shapes_.find(name);
    if (it == memory_shapes_.end()) throw InferenceError("in-memory weights: missing tensor '" + name + "'");
    return it->second;
  }
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
  if (in_memory_) return take(name, shape, true);
  const TensorView& v = view(name, shape);
  const torch::ScalarType src = to_torch(v.dtype);
  if (!torch::isFloatingType(src))
    throw InferenceError("checkpoint " + v.file + ": tensor '" + name + "' has dtype " + dtype_name(v.dtype) +
                         ", expected a floating-point weight");
  return load(v, options_.dtype);
}

void Weights::get_into(const std::string& name, torch::Tensor destination) {
  const std::vector<int64_t> shape = destination.sizes().vec();
  if (in_memory_) {
    destination.copy_(take(name, shape, true));
    return;
  }
  const TensorView& v = view(name, shape);
  if (!torch::isFloatingType(to_torch(v.dtype)))
    throw InferenceError("checkpoint " + v.file + ": tensor '" + name + "' has dtype " + dtype_name(v.dtype) +
                         ", expected a floating-point weight");
  if (destination.is_cpu() && destination.is_contiguous() && to_torch(v.dtype) == destination.scalar_type()) {
    if (v.nbytes) std::memcpy(destination.data_ptr(), v.data, v.nbytes);
    checkpoint_->release(v);
    return;
  }
  destination.copy_(load(v, to_torch(v.dtype)));
}

torch::Tensor Weights::get_raw(const std::string& name, const std::vector<int64_t>& shape) {
  if (in_memory_) return take(name, shape, false);
  const TensorView& v = view(name, shape);
  return load(v, to_torch(v.dtype));
}

std::vector<std::string> Weights::unused(const std::vector<std::string>& ignored_prefixes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  std::vector<std::string> names;
  if (in_memory_)
    for (const auto& kv : memory_shapes_) names.push_back(kv.first);
  else
    names = checkpoint_->names();
  for (const auto& name : names) {
    if (used_.count(name)) continue;
    bool ignored = false;
    for (const auto& p : ignored_prefixes)
      if (name.rfind(p, 0) == 0) ignored = true;
    if (!ignored) out.push_back(name);
  }
  return out;
}

}  // namespace unibiomed::inference
