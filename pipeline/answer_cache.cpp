// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/answer_cache.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace unibiomed::pipeline {

namespace {

class Writer {
 public:
  void number(uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  void text(const std::string& s) {
    number(s.size());
    out += s;
  }
  void real(double v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
  // Masks and probabilities are long runs of one value: (value, run length) pairs, or the raw
  // bytes where that is shorter.
  void bytes(const std::vector<uint8_t>& b) {
    Writer w;
    for (size_t i = 0; i < b.size();) {
      size_t j = i + 1;
      while (j < b.size() && b[j] == b[i]) ++j;
      w.out.push_back(static_cast<char>(b[i]));
      w.number(j - i);
      i = j;
    }
    number(b.size());
    if (w.out.size() < b.size()) {
      out.push_back(1);
      text(w.out);
    } else {
      out.push_back(0);
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    }
  }
  void mask(const FrameMask& m) {
    number(m.frame);
    bytes(m.mask);
    bytes(m.probability);
    real(m.iou);
    text(m.phrase);
    text(m.text);
    text(m.answer);
  }
  std::string out;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  uint64_t number() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t b = static_cast<uint8_t>(take(1)[0]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("answer cache: bad number");
  }
  std::string text() {
    const size_t n = number();
    return std::string(take(n), n);
  }
  double real() {
    double v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
  std::vector<uint8_t> bytes() {
    const size_t n = number();
    std::vector<uint8_t> b;
    b.reserve(n);
    if (take(1)[0] == 0) {
      const char* p = take(n);
      b.assign(p, p + n);
      return b;
    }
    const std::string runs = text();
    Reader r(runs);
    while (!r.done()) {
      const uint8_t value = static_cast<uint8_t>(r.take(1)[0]);
      b.insert(b.end(), r.number(), value);
    }
    if (b.size() != n) throw std::runtime_error("answer cache: bad run lengths");
    return b;
  }
  FrameMask mask() {
    FrameMask m;
    m.frame = number();
    m.mask = bytes();
    m.probability = bytes();
    m.iou = real();
    m.phrase = text();
    m.text = text();
    m.answer = text();
    return m;
  }
  bool done() const { return at_ == in_.size(); }

 private:
  const char* take(size_t n) {
    if (n > in_.size() - at_) throw std::runtime_error("answer cache: truncated entry");
    const char* p = in_.data() + at_;
    at_ += n;
    return p;
  }
  const std::string& in_;
  size_t at_ = 0;
};

}  // namespace

std::string AnswerCache::encode(const CachedAnswers& answers) {
  Writer w;
  w.number(static_cast<uint64_t>(answers.views));
  w.number(answers.results.size());
  for (const QuestionResult& q : answers.results) {
    w.number(q.masks.size());
    for (const auto& [unit, masks] : q.masks) {
      w.number(unit);
      w.number(masks.size());
      for (const auto& m : masks) w.mask(m);
    }
    w.number(q.texts.size());
    for (const auto& [unit, texts] : q.texts) {
      w.number(unit);
      w.number(texts.size());
      for (const auto& [frame, sentence] : texts) {
        w.number(frame);
        w.text(sentence);
      }
    }
    w.number(q.tracks.size());
    for (const auto& [unit, tracks] : q.tracks) {
      w.number(unit);
      w.number(tracks.size());
      for (const auto& track : tracks) {
        w.number(track.size());
        for (const auto& m : track) w.mask(m);
      }
    }
  }
  return std::move(w.out);
}

CachedAnswers AnswerCache::decode(const std::string& blob) {
  Reader r(blob);
  CachedAnswers a;
  a.views = static_cast<int>(r.number());
  a.results.resize(r.number());
  for (QuestionResult& q : a.results) {
    for (size_t units = r.number(); units > 0; --units) {
      auto& masks = q.masks[r.number()];
      for (size_t n = r.number(); n > 0; --n) masks.push_back(r.mask());
    }
    for (size_t units = r.number(); units > 0; --units) {
      auto& texts = q.texts[r.number()];
      for (size_t n = r.number(); n > 0; --n) {
        const size_t frame = r.number();
        texts.emplace_back(frame, r.text());
      }
    }
    for (size_t units = r.number(); units > 0; --units) {
      auto& tracks = q.tracks[r.number()];
      for (size_t n = r.number(); n > 0; --n) {
        tracks.emplace_back();
        for (size_t k = r.number(); k > 0; --k) tracks.back().push_back(r.mask());
      }
    }
  }
  if (!r.done()) throw std::runtime_error("answer cache: trailing bytes");
  return a;
}

std::optional<CachedAnswers> AnswerCache::find(const std::string& key) {
  std::string blob;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    blob = it->second->second;
  }
  return decode(blob);
}

void AnswerCache::put(const std::string& key, const CachedAnswers& answers) {
  std::string blob = encode(answers);
  const size_t size = blob.size() + key.size();
  std::lock_guard<std::mutex> lock(mutex_);
  if (const auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->first.size() + it->second->second.size();
    order_.erase(it->second);
    index_.erase(it);
  }
  if (size > max_bytes_) return;
  while (bytes_ + size > max_bytes_ && !order_.empty()) {
    bytes_ -= order_.back().first.size() + order_.back().second.size();
    index_.erase(order_.back().first);
    order_.pop_back();
  }
  order_.emplace_front(key, std::move(blob));
  index_[key] = order_.begin();
  bytes_ += size;
}

size_t AnswerCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

size_t AnswerCache::entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return order_.size();
}

}  // namespace unibiomed::pipeline
