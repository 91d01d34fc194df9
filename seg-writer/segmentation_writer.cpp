// SPDX-License-Identifier: GPL-3.0-or-later
//
// How the SEG is assembled. DCMTK's DcmSegmentation (dcmseg) writes the modules: patient, study
// and frame of reference taken over from the source, the new series, equipment, the Segment
// Sequence with codes, colours and algorithm identification, shared functional groups and the
// dimension organisation, each checked against its IOD rules. Two parts are written here instead,
// both replacing what DCMTK wrote:
// - Pixel Data: DCMTK 3.6.7 mis-packs binary frames after the first when Rows x Columns is not a
//   multiple of 8 (docs/DICOM-OUTPUT.md); frames are packed here continuously, least significant bit
//   first (binary_frame_packing.h), straight into the element's buffer.
// - Per-Frame Functional Groups: dcmfg copies, packs and checks every frame through generic
//   functional-group objects (about 0.5 ms per frame, 1.6 s for 3000 frames of 512x512 here),
//   so the per-frame items are built directly as DcmItems: derivation image with the source
//   reference (Spatial Locations Preserved YES: masks are always on the source's pixel grid),
//   frame content (dimension index values), plane position, segment identification.
// DCMTK is therefore given one frame per segment (its first), and its per-frame sequence, frame
// count and pixel data are then replaced by the complete ones.
#include "seg-writer/segmentation_writer.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmiod/iodrules.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "seg-writer/binary_frame_packing.h"
#include "seg-writer/decimal_string.h"
#include "seg-writer/dicom_uid.h"

namespace unibiomed::seg {

WrittenSegmentation::WrittenSegmentation() = default;
WrittenSegmentation::WrittenSegmentation(WrittenSegmentation&&) noexcept = default;
WrittenSegmentation& WrittenSegmentation::operator=(WrittenSegmentation&&) noexcept = default;
WrittenSegmentation::~WrittenSegmentation() = default;

namespace {

// Code values of the derivation (PS3.3 C.8.20.2 / highdicom, dcmqi): every SEG frame is
// "Segmentation" of a "Source image for image processing operation".
const CodedConcept kDerivationSegmentation{"113076", "DCM", "Segmentation"};
const CodedConcept kPurposeSourceImage{"121322", "DCM", "Source image for image processing operation"};

// Positions closer than this along the normal are the same slice position (mm).
constexpr double kSamePositionTolerance = 1e-3;

void check(const OFCondition& status, const std::string& what) {
  if (status.bad()) throw SegmentationError(what + ": " + status.text());
}

std::string segment_name(size_t index, const Segment& segment) {
  return "segment " + std::to_string(index + 1) +
         (segment.description.label.empty() ? std::string() : " '" + segment.description.label + "'");
}

void require_code(const CodedConcept& code, const std::string& what, const std::string& owner) {
  if (code.value.empty() || code.scheme.empty() || code.meaning.empty())
    throw SegmentationError(owner + ": " + what +
                            " needs a code value, a coding scheme designator and a meaning (got '" + code.value +
                            "', '" + code.scheme + "', '" + code.meaning + "')");
}

// A text value: valid UTF-8 without control characters, cut to at most `max_characters`
// characters (not bytes: a character is not split). LO and SH (`free_text` false) hold no
// backslash either; ST and LT (`free_text`) may hold backslashes, CR, LF and FF (PS3.5 6.2; not
// TAB, which dciodvfy rejects there).
std::string text_value(const std::string& value, size_t max_characters, const std::string& what,
                       bool free_text = false) {
  std::string out;
  size_t characters = 0;
  for (size_t i = 0; i < value.size();) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    const size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > value.size())
      throw SegmentationError(what + " is not valid UTF-8 (byte " + std::to_string(i) + ")");
    for (size_t k = 1; k < length; ++k)
      if ((static_cast<unsigned char>(value[i + k]) >> 6) != 0x2)
        throw SegmentationError(what + " is not valid UTF-8 (byte " + std::to_string(i + k) + ")");
    const bool free_text_character = c == '\\' || c == '\n' || c == '\f' || c == '\r';
    if (free_text ? c == 0x7F || (c < 0x20 && !free_text_character) : c < 0x20 || c == 0x7F || c == '\\')
      throw SegmentationError(
          what + (free_text ? " contains a control character" : " contains a control character or backslash") +
          " at byte " + std::to_string(i));
    if (characters == max_characters) break;
    out.append(value, i, length);
    ++characters;
    i += length;
  }
  return out;
}

// Text that is not ASCII, to be put into the written Segment Sequence afterwards: DCMTK 3.6.7
// checks values against the default character repertoire when it writes the segment modules.
struct TextPatch {
  size_t segment;                    // item of the Segment Sequence
  std::vector<DcmTagKey> sequences;  // nested sequences (first item each)
  DcmTagKey tag;
  std::string value;
};

class TextPatches {
 public:
  // `value` itself when ASCII, else a placeholder and a patch for later.
  std::string ascii_or_later(size_t segment, std::vector<DcmTagKey> sequences, const DcmTagKey& tag,
                             const std::string& value) {
    if (std::all_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
      return value;
    patches_.push_back({segment, std::move(sequences), tag, value});
    return "x";
  }
  void apply(DcmItem& dataset) const {
    for (const TextPatch& p : patches_) {
      DcmItem* item = nullptr;
      if (dataset.findAndGetSequenceItem(DCM_SegmentSequence, item, static_cast<long>(p.segment)).bad()) continue;
      for (const DcmTagKey& sequence : p.sequences)
        if (!item || item->findAndGetSequenceItem(sequence, item).bad()) item = nullptr;
      if (item) check(item->putAndInsertString(p.tag, p.value.c_str()), "segment text");
    }
  }

 private:
  std::vector<TextPatch> patches_;
};

// A code (value SH 16, scheme SH 16, meaning LO 64).
OFCondition set_code(CodeSequenceMacro& macro, const CodedConcept& code, const std::string& what, size_t segment,
                     std::vector<DcmTagKey> sequences, TextPatches& patches) {
  return macro.set(
      patches.ascii_or_later(segment, sequences, DCM_CodeValue, text_value(code.value, 16, what + " code value"))
          .c_str(),
      patches
          .ascii_or_later(segment, sequences, DCM_CodingSchemeDesignator,
                          text_value(code.scheme, 16, what + " coding scheme"))
          .c_str(),
      patches.ascii_or_later(segment, sequences, DCM_CodeMeaning, text_value(code.meaning, 64, what + " code meaning"))
          .c_str());
}

// Content Label is a CS: upper case letters, digits, space and underscore, at most 16.
std::string content_label(const std::string& wanted) {
  std::string out;
  for (char c : wanted) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u))
      out.push_back(static_cast<char>(std::toupper(u)));
    else if (c == ' ' || c == '_' || c == '-')
      out.push_back('_');
  }
  if (out.empty()) out = "SEGMENTATION";
  return out.substr(0, 16);
}

DcmItem* code_item(const CodedConcept& code) {
  auto item = std::make_unique<DcmItem>();
  item->putAndInsertString(DCM_CodeValue, code.value.c_str());
  item->putAndInsertString(DCM_CodingSchemeDesignator, code.scheme.c_str());
  item->putAndInsertString(DCM_CodeMeaning, code.meaning.c_str());
  return item.release();
}

// A sequence with one item, inserted into `parent`; returns the item.
DcmItem& insert_sequence_item(DcmItem& parent, const DcmTag& tag, DcmItem* item) {
  auto sequence = std::make_unique<DcmSequenceOfItems>(tag);
  sequence->append(item);
  parent.insert(sequence.release(), true);
  return *item;
}

// Validates the masks of one segment and returns them by source frame.
std::map<size_t, const FrameMask*> index_masks(size_t segment_index, const Segment& segment,
                                               const SourceImages& sources) {
  const size_t pixels = static_cast<size_t>(sources.rows()) * sources.columns();
  std::map<size_t, const FrameMask*> by_frame;
  for (const FrameMask& mask : segment.masks) {
    const std::string where =
        segment_name(segment_index, segment) + ", mask for source frame " + std::to_string(mask.frame);
    if (mask.frame >= sources.frame_count())
      throw SegmentationError(where + ": the source series has only " + std::to_string(sources.frame_count()) +
                              " frames (indices 0.." + std::to_string(sources.frame_count() - 1) + ")");
    const bool has_binary = !mask.binary.empty();
    const bool has_probability = !mask.probability.empty();
    if (has_binary == has_probability)
      throw SegmentationError(where + ": set exactly one of binary or probability values");
    const size_t size = has_binary ? mask.binary.size() : mask.probability.size();
    if (size != pixels)
      throw SegmentationError(where + ": " + std::to_string(size) + " values, but the source frames have " +
                              std::to_string(sources.columns()) + "x" + std::to_string(sources.rows()) + " = " +
                              std::to_string(pixels) + " pixels");
    if (has_probability) {
      for (size_t i = 0; i < size; ++i) {
        const float p = mask.probability[i];
        if (!(p >= 0.0f && p <= 1.0f))
          throw SegmentationError(where + ": probability " + std::to_string(p) + " at pixel (" +
                                  std::to_string(i % sources.columns()) + ", " + std::to_string(i / sources.columns()) +
                                  ") is outside [0, 1]");
      }
    }
    if (!by_frame.emplace(mask.frame, &mask).second)
      throw SegmentationError(where + ": the frame is given more than once");
  }
  return by_frame;
}

bool any_nonzero(const std::uint8_t* bytes, size_t count) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    if (word) return true;
  }
  for (; i < count; ++i)
    if (bytes[i]) return true;
  return false;
}

// True when the mask has a pixel inside once thresholded (as the binary and the automatic
// fractional forms write it).
bool has_pixel(const FrameMask& mask, float threshold) {
  if (any_nonzero(mask.binary.data(), mask.binary.size())) return true;
  return std::any_of(mask.probability.begin(), mask.probability.end(), [&](float p) { return p >= threshold; });
}

// True when any of the `count` bits starting at bit `first` of `data` is set.
bool any_bit(const std::uint8_t* data, size_t first, size_t count) {
  if (count == 0) return false;
  const size_t last = first + count - 1;
  const size_t first_byte = first >> 3, last_byte = last >> 3;
  if (first_byte == last_byte) {
    const unsigned mask = ((0xFFu << (first & 7)) & (0xFFu >> (7 - (last & 7)))) & 0xFFu;
    return (data[first_byte] & mask) != 0;
  }
  if (data[first_byte] & (0xFFu << (first & 7)) & 0xFFu) return true;
  if (data[last_byte] & (0xFFu >> (7 - (last & 7)))) return true;
  return any_nonzero(data + first_byte + 1, last_byte - first_byte - 1);
}

// Copies `count` bits starting at bit `first` of `data` into 64-bit words (bit i -> word i/64,
// bit i%64), for the overlap test.
void extract_bits(const std::uint8_t* data, size_t first, size_t count, std::vector<std::uint64_t>& words) {
  words.assign((count + 63) / 64, 0);
  if ((first & 7) == 0) {
    std::memcpy(words.data(), data + (first >> 3), (count + 7) / 8);
  } else {
    const unsigned shift = first & 7;
    const std::uint8_t* src = data + (first >> 3);
    auto* out = reinterpret_cast<std::uint8_t*>(words.data());
    const size_t bytes = (count + 7) / 8;
    for (size_t b = 0; b < bytes; ++b) {
      const unsigned low = src[b] >> shift;
      // The next source byte exists whenever bits of this output byte come from it.
      const unsigned high = (b * 8 + (8 - shift) < count) ? static_cast<unsigned>(src[b + 1]) << (8 - shift) : 0u;
      out[b] = static_cast<std::uint8_t>(low | high);
    }
  }
  if (count % 64) words.back() &= (std::uint64_t{1} << (count % 64)) - 1;
}

// Runs body(0..count-1) on up to 8 threads (the work items are independent frames); the
// first exception is rethrown after all threads have finished.
void parallel_for(size_t count, const std::function<void(size_t)>& body) {
  const size_t threads = std::min<size_t>({std::max(1u, std::thread::hardware_concurrency()), 8, (count + 15) / 16});
  if (threads <= 1) {
    for (size_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_lock;
  auto work = [&]() {
    try {
      for (size_t i = next++; i < count; i = next++) body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_lock);
      if (!failure) failure = std::current_exception();
      next = count;
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

// True when the SEG can state where its frames lie: planes in patient space (positions, one
// orientation, a frame of reference) with a pixel spacing. Anything less is written like images
// without geometry: no frame of reference, no plane or pixel measures groups, no position
// dimension, Patient Orientation instead.
bool states_geometry(const SourceImages& sources) {
  return sources.has_geometry() && sources.pixel_spacing().has_value();
}

// One frame of the SEG: which segment, which source frame.
struct SegFrame {
  Uint16 segment_number;
  size_t source_frame;
};

}  // namespace

SegmentationOptions::Type automatic_type(std::size_t rows, std::size_t columns) {
  // Frame k starts at bit k x rows x columns: on a byte boundary for every k exactly when
  // rows x columns is a multiple of 8. Then the packed length is a whole number of bytes per
  // frame and OHIF reads it right; otherwise one byte per pixel.
  return (rows * columns) % 8 == 0 ? SegmentationOptions::Type::Binary : SegmentationOptions::Type::Fractional;
}

std::optional<WrittenSegmentation> write_segmentation(const SourceImages& sources, const std::vector<Segment>& segments,
                                                      const SegmentationOptions& options) {
  if (segments.empty()) return std::nullopt;  // nothing to write: no file, not an empty SEG
  if (segments.size() > 65535) throw SegmentationError("a segmentation holds at most 65535 segments");
  // Binary and automatic forms threshold probabilities.
  if (options.type != SegmentationOptions::Type::Fractional && !(options.threshold > 0.0f && options.threshold <= 1.0f))
    throw SegmentationError("the probability threshold must be in (0, 1], got " + std::to_string(options.threshold));

  // ---- validate the segments and decide the frame order ----------------------------------
  const size_t rows = sources.rows(), columns = sources.columns(), pixels = rows * columns;
  std::vector<std::map<size_t, const FrameMask*>> masks_by_segment;
  for (size_t s = 0; s < segments.size(); ++s) {
    const auto& d = segments[s].description;
    const std::string owner = segment_name(s, segments[s]);
    if (d.label.empty()) throw SegmentationError(owner + " has no label");
    require_code(d.category, "the segmented property category", owner);
    require_code(d.type, "the segmented property type", owner);
    if (d.anatomic_region) require_code(*d.anatomic_region, "the anatomic region", owner);
    if (d.type_modifier) require_code(*d.type_modifier, "the segmented property type modifier", owner);
    if (d.algorithm.name.empty()) throw SegmentationError(owner + " has no algorithm name");
    masks_by_segment.push_back(index_masks(s, segments[s], sources));
  }
  const std::vector<size_t> slice_order = sources.frames_in_slice_order();

  // ---- the form -----------------------------------------------------------------------------
  SegmentationOptions::Type type = options.type;
  if (type == SegmentationOptions::Type::Automatic) {
    type = automatic_type(rows, columns);
    // Binary frames of an odd number of bytes, an odd number of them, and no source frame left
    // free for the empty frame that keeps the length even (below): the padding byte would make
    // OHIF fetch the frames one by one, which Orthanc 1.10.1 refuses for 1-bit frames. The
    // fractional form has an even number of bytes a frame, whatever the frame count.
    if (type == SegmentationOptions::Type::Binary && (pixels / 8) % 2 == 1) {
      size_t frames = 0;
      bool free_frame = false;
      for (size_t s = 0; s < segments.size(); ++s)
        for (size_t source_frame : slice_order) {
          auto found = masks_by_segment[s].find(source_frame);
          const bool written = found != masks_by_segment[s].end()
                                   ? !options.omit_empty_frames || has_pixel(*found->second, options.threshold)
                                   : !options.omit_empty_frames;
          frames += written;
          free_frame = free_frame || !written;
        }
      if (frames > 1 && frames % 2 == 1 && !free_frame) type = SegmentationOptions::Type::Fractional;
    }
  }
  const bool binary = type == SegmentationOptions::Type::Binary;
  // A fractional SEG chosen automatically holds the thresholded mask as 0/255 (OCCUPANCY): OHIF
  // draws only fractional SEGs whose values are all 0 or the maximum.
  const bool thresholded_fractional = !binary && options.type == SegmentationOptions::Type::Automatic;

  // Whether the SEG states the frames' geometry: a frame of reference with plane orientation,
  // plane positions and pixel measures, all or none (PS3.3 A.51.5: the plane and pixel measures
  // groups are required when Frame of Reference UID is present). A source whose pixel spacing is
  // missing or unreadable gets a SEG like images without geometry.
  const bool geometry = states_geometry(sources);

  // Position index of every source frame: rank of its distinct position along the normal.
  std::vector<Uint32> position_index(sources.frame_count(), 1);
  if (geometry) {
    const auto n = *sources.normal();
    double previous = 0;
    Uint32 rank = 0;
    for (size_t k = 0; k < slice_order.size(); ++k) {
      const auto& p = *sources.frame(slice_order[k]).position;
      const double along = p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
      if (k == 0 || along - previous > kSamePositionTolerance) ++rank;
      previous = along;
      position_index[slice_order[k]] = rank;
    }
  }

  // ---- pack the pixel data ----------------------------------------------------------------
  // Candidate frames in SEG order: segment by segment, slices in position order (as dcmqi and
  // highdicom write them); every listed mask, or every source frame when empty frames are kept.
  struct Candidate {
    size_t segment, source_frame;
    const FrameMask* mask;  // null: an empty frame
  };
  std::vector<Candidate> candidates;
  for (size_t s = 0; s < segments.size(); ++s)
    for (size_t source_frame : slice_order) {
      auto found = masks_by_segment[s].find(source_frame);
      const FrameMask* mask = found == masks_by_segment[s].end() ? nullptr : found->second;
      if (mask || !options.omit_empty_frames) candidates.push_back({s, source_frame, mask});
    }
  // Bits of a binary frame, bytes of a fractional one; a binary frame owns whole bytes when
  // Rows x Columns is a multiple of 8, and frames can then be packed in parallel.
  const size_t frame_units = pixels;
  const bool whole_bytes = !binary || pixels % 8 == 0;
  const size_t frame_bytes = binary ? pixels / 8 : pixels;
  const size_t capacity = binary ? packed_binary_size(pixels, candidates.size())
                                 : candidates.size() * pixels + (candidates.size() * pixels) % 2;
  if (capacity > 0xFFFFFFFEull)
    throw SegmentationError("the pixel data would exceed 4 GB (" + std::to_string(candidates.size()) +
                            " frames): split the segmentation");
  auto pixel_data = std::make_unique<DcmPixelData>(DCM_PixelData);
  Uint8* packed = nullptr;
  if (capacity > 0) check(pixel_data->createUint8Array(static_cast<Uint32>(capacity), packed), "allocating pixel data");
  if (!whole_bytes) {
    std::memset(packed, 0, capacity);  // frames share bytes: bits are OR-ed into a zeroed buffer
  } else if (capacity > candidates.size() * frame_bytes) {
    std::memset(packed + candidates.size() * frame_bytes, 0, capacity - candidates.size() * frame_bytes);
  }

  // Packs candidate `i` into frame slot `slot`; true when it has a pixel inside. With whole
  // bytes every byte of the slot is written; otherwise bits are only set in a zeroed slot.
  auto pack = [&](size_t i, size_t slot) {
    const FrameMask* mask = candidates[i].mask;
    if (binary) {
      const size_t first_bit = slot * frame_units;
      if (!mask) {
        if (whole_bytes) std::memset(packed + slot * frame_bytes, 0, frame_bytes);
        return false;
      }
      if (!mask->binary.empty()) pack_binary(mask->binary.data(), pixels, packed, first_bit);
      if (!mask->probability.empty())
        pack_binary(mask->probability.data(), pixels, options.threshold, packed, first_bit);
      return whole_bytes ? any_nonzero(packed + slot * frame_bytes, frame_bytes) : any_bit(packed, first_bit, pixels);
    }
    std::uint8_t* out = packed + slot * pixels;
    if (!mask) {
      std::memset(out, 0, pixels);
      return false;
    }
    if (!mask->binary.empty())
      for (size_t k = 0; k < pixels; ++k) out[k] = mask->binary[k] ? 255 : 0;
    if (!mask->probability.empty() && thresholded_fractional)
      for (size_t k = 0; k < pixels; ++k) out[k] = mask->probability[k] >= options.threshold ? 255 : 0;
    else if (!mask->probability.empty())
      for (size_t k = 0; k < pixels; ++k)
        out[k] = static_cast<std::uint8_t>(std::lround(mask->probability[k] * 255.0f));
    return any_nonzero(out, pixels);
  };
  std::vector<char> nonempty(candidates.size(), 0);
  std::vector<size_t> kept;  // candidates written, in SEG frame order
  kept.reserve(candidates.size());
  auto keep = [&](size_t i) { return nonempty[i] || !options.omit_empty_frames; };
  if (whole_bytes) {
    // Each frame in its own slot, in parallel, then empty frames squeezed out.
    parallel_for(candidates.size(), [&](size_t i) { nonempty[i] = pack(i, i); });
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!keep(i)) continue;
      const size_t slot = kept.size();
      const size_t bytes = binary ? frame_bytes : pixels;
      if (slot != i) std::memmove(packed + slot * bytes, packed + i * bytes, bytes);
      kept.push_back(i);
    }
  } else {
    // Frames share boundary bytes: one after the other; a frame found empty left its bits at
    // zero and the next frame is packed over it.
    for (size_t i = 0; i < candidates.size(); ++i) {
      nonempty[i] = pack(i, kept.size());
      if (keep(i)) kept.push_back(i);
    }
  }

  WrittenSegmentation result;
  result.segmentation_type = binary ? "BINARY" : "FRACTIONAL";
  if (!binary) result.fractional_type = thresholded_fractional ? "OCCUPANCY" : "PROBABILITY";
  result.frames_per_segment.resize(segments.size());
  std::vector<SegFrame> seg_frames;
  std::vector<char> segment_has_pixels(segments.size(), 0);
  for (size_t i = 0; i < candidates.size(); ++i)
    if (nonempty[i]) segment_has_pixels[candidates[i].segment] = 1;
  for (size_t s = 0; s < segments.size(); ++s)
    if (!segment_has_pixels[s])
      throw SegmentationError(segment_name(s, segments[s]) +
                              " has no pixel inside its mask: leave the finding without a segment instead");
  for (size_t i : kept) {
    seg_frames.push_back({static_cast<Uint16>(candidates[i].segment + 1), candidates[i].source_frame});
    result.frames_per_segment[candidates[i].segment].push_back(candidates[i].source_frame);
  }
  const size_t data_frames = seg_frames.size();  // frames packed above
  // OHIF 3.13.2 (dcmjs' AsyncDicomReader) cuts byte-aligned multi-frame pixel data into frames
  // only when its length is a multiple of the frame count. The padding byte of an odd length
  // breaks that: OHIF then fetches frame by frame, which Orthanc 1.10.1 refuses for 1-bit frames.
  // One more frame, empty, of a segment (the last one that can) on a source frame it has no
  // frame on, makes the length even without padding (a SEG may hold empty frames, as
  // omit_empty_frames = false does). When every segment has a frame on every source frame, the
  // automatic form is fractional (above), which OHIF still draws right after fetching its frames
  // one by one (Orthanc serves 8-bit frames); a binary form asked for explicitly is padded.
  const size_t frame_bytes_aligned = binary ? pixels / 8 : pixels;
  if (whole_bytes && data_frames > 1 && (data_frames * frame_bytes_aligned) % 2 == 1) {
    for (size_t s = segments.size(); s-- > 0 && !result.padding_frame;) {
      std::vector<size_t>& has = result.frames_per_segment[s];
      for (size_t source_frame : slice_order)
        if (std::find(has.begin(), has.end(), source_frame) == has.end()) {
          seg_frames.push_back({static_cast<Uint16>(s + 1), source_frame});
          has.push_back(source_frame);
          result.padding_frame = seg_frames.size();
          break;
        }
    }
  }
  const size_t frame_count = seg_frames.size();
  const size_t used =
      binary ? packed_binary_size(pixels, frame_count) : frame_count * pixels + (frame_count * pixels) % 2;
  if (used != capacity || frame_count != data_frames) {
    // Empty frames were dropped, or the padding frame added: give the element exactly the bytes
    // in use, zero after the packed frames.
    auto exact = std::make_unique<DcmPixelData>(DCM_PixelData);
    Uint8* bytes = nullptr;
    check(exact->createUint8Array(static_cast<Uint32>(used), bytes), "allocating pixel data");
    const size_t meaningful = binary ? (data_frames * pixels + 7) / 8 : data_frames * pixels;
    std::memcpy(bytes, packed, std::min(meaningful, used));
    if (used > meaningful) std::memset(bytes + meaningful, 0, used - meaningful);
    if (binary && (data_frames * pixels) % 8)  // bits past the last frame in its last byte
      bytes[meaningful - 1] &= static_cast<std::uint8_t>((1u << ((data_frames * pixels) % 8)) - 1);
    pixel_data = std::move(exact);
    packed = bytes;
  }

  // Segments Overlap: any pixel in two segments on one source frame. Frames are grouped by
  // source frame and compared in parallel.
  {
    std::vector<std::vector<size_t>> by_source(sources.frame_count());
    for (size_t k = 0; k < kept.size(); ++k)  // the padding frame is empty
      if (nonempty[kept[k]]) by_source[seg_frames[k].source_frame].push_back(k);
    std::vector<char> overlaps(sources.frame_count(), 0);
    parallel_for(by_source.size(), [&](size_t f) {
      if (by_source[f].size() < 2) return;
      if (binary && whole_bytes) {
        // Frames own whole bytes: compare them in place, 8 bytes at a time.
        std::vector<std::uint8_t> taken(packed + by_source[f][0] * frame_bytes,
                                        packed + (by_source[f][0] + 1) * frame_bytes);
        for (size_t j = 1; j < by_source[f].size(); ++j) {
          const std::uint8_t* frame = packed + by_source[f][j] * frame_bytes;
          std::uint64_t common = 0;
          size_t b = 0;
          for (; b + 8 <= frame_bytes; b += 8) {
            std::uint64_t x, y;
            std::memcpy(&x, frame + b, 8);
            std::memcpy(&y, taken.data() + b, 8);
            common |= x & y;
            y |= x;
            std::memcpy(taken.data() + b, &y, 8);
          }
          for (; b < frame_bytes; ++b) {
            common |= frame[b] & taken[b];
            taken[b] |= frame[b];
          }
          if (common) overlaps[f] = 1;
        }
        return;
      }
      std::vector<std::uint64_t> taken, bits;
      std::vector<std::uint8_t> scratch;
      for (size_t k : by_source[f]) {
        if (binary) {
          extract_bits(packed, k * pixels, pixels, bits);
        } else {
          scratch.assign((pixels + 7) / 8 + 1, 0);
          pack_binary(packed + k * pixels, pixels, scratch.data(), 0);
          extract_bits(scratch.data(), 0, pixels, bits);
        }
        if (taken.empty()) {
          taken = bits;
          continue;
        }
        for (size_t w = 0; w < bits.size(); ++w) {
          if (taken[w] & bits[w]) overlaps[f] = 1;
          taken[w] |= bits[w];
        }
      }
    });
    result.segments_overlap = std::find(overlaps.begin(), overlaps.end(), 1) != overlaps.end();
  }
  std::vector<std::uint8_t> zero_frame;  // DCMTK's placeholder frames

  // ---- the modules, written by DCMTK -------------------------------------------------------
  const AlgorithmIdentity& algorithm = options.algorithm;
  const std::string manufacturer = algorithm.name.empty() ? "UniBiomed" : algorithm.name;
  IODGeneralEquipmentModule::EquipmentInfo equipment(
      manufacturer.c_str(), options.device_serial_number.empty() ? "1" : options.device_serial_number.c_str(),
      (manufacturer + (algorithm.version.empty() ? "" : " " + algorithm.version)).c_str(),
      (options.software_versions.empty() ? (algorithm.version.empty() ? "unknown" : algorithm.version)
                                         : options.software_versions)
          .c_str());
  ContentIdentificationMacro content(std::to_string(options.instance_number).c_str(),
                                     content_label(options.content_label).c_str(),
                                     (manufacturer + " segmentation").c_str(), options.content_creator.c_str());
  DcmSegmentation* created = nullptr;
  if (binary)
    check(DcmSegmentation::createBinarySegmentation(created, static_cast<Uint16>(rows), static_cast<Uint16>(columns),
                                                    equipment, content),
          "creating the segmentation");
  else
    check(
        DcmSegmentation::createFractionalSegmentation(
            created, static_cast<Uint16>(rows), static_cast<Uint16>(columns),
            thresholded_fractional ? DcmSegTypes::SFT_OCCUPANCY : DcmSegTypes::SFT_PROBABILITY, 255, equipment, content),
        "creating the segmentation");
  std::unique_ptr<DcmSegmentation> seg(created);
  // Patient, study and frame of reference from the source, in UTF-8 like the segment labels.
  // Frames whose geometry is not stated get no frame of reference: it would require plane
  // positions, orientation and pixel measures (PS3.3 A.51.5).
  ResultsHeader taken_over = sources.header_in_utf8();
  DcmDataset* header = taken_over.dataset.get();
  if (!geometry) {
    delete header->remove(DCM_FrameOfReferenceUID);
    delete header->remove(DCM_PositionReferenceIndicator);
  }
  check(seg->importFromSourceImage(*header, OFTrue), "taking over patient, study and frame of reference");
  if (!geometry) {
    // The Frame of Reference module is conditional in the SEG IOD; DCMTK's rules make it mandatory.
    for (const DcmTagKey& tag : {DCM_FrameOfReferenceUID, DCM_PositionReferenceIndicator})
      if (IODRule* rule = seg->getRules()->getByTag(tag)) rule->setType("3");
  }

  const std::string seed = options.uid_seed;
  result.sop_class_uid = UID_SegmentationStorage;
  result.sop_instance_uid =
      !options.sop_instance_uid.empty() ? options.sop_instance_uid : make_uid(seed.empty() ? "" : seed + "/seg/sop");
  result.series_instance_uid = !options.series_instance_uid.empty()
                                   ? options.series_instance_uid
                                   : make_uid(seed.empty() ? "" : seed + "/seg/series");
  check(seg->getSOPCommon().setSOPInstanceUID(result.sop_instance_uid.c_str()), "setting the SOP Instance UID");
  check(seg->getSeries().setSeriesInstanceUID(result.series_instance_uid.c_str()), "setting the Series Instance UID");
  const std::string description =
      options.series_description.empty() ? manufacturer + " segmentation" : options.series_description;
  check(seg->getSeries().setSeriesDescription(description.substr(0, 64).c_str()), "setting the Series Description");
  check(seg->getSegmentationSeriesModule().setSeriesNumber(std::to_string(options.series_number).c_str()),
        "setting the Series Number");

  TextPatches patches;
  for (size_t s = 0; s < segments.size(); ++s) {
    const auto& d = segments[s].description;
    const std::string owner = segment_name(s, segments[s]);
    // Text is checked here (valid UTF-8, no control characters, at most the VR's characters);
    // DCMTK 3.6.7's value checker knows no UTF-8, so non-ASCII text is put in after writing.
    auto text = [&](std::vector<DcmTagKey> sequences, const DcmTagKey& tag, const std::string& value, size_t max,
                    const std::string& what, bool free_text = false) {
      return patches.ascii_or_later(s, std::move(sequences), tag,
                                    text_value(value, max, owner + " " + what, free_text));
    };
    const std::string algorithm_name = text({}, DCM_SegmentAlgorithmName, d.algorithm.name, 64, "algorithm name");
    DcmSegment* raw = nullptr;
    check(DcmSegment::create(raw, text({}, DCM_SegmentLabel, d.label, 64, "label").c_str(),
                             CodeSequenceMacro("x", "x", "x"), CodeSequenceMacro("x", "x", "x"),
                             DcmSegTypes::SAT_AUTOMATIC, algorithm_name.c_str()),
          owner);
    std::unique_ptr<DcmSegment> segment(raw);
    check(set_code(segment->getSegmentedPropertyCategoryCode(), d.category, owner + " category", s,
                   {DCM_SegmentedPropertyCategoryCodeSequence}, patches),
          owner + " category");
    check(set_code(segment->getSegmentedPropertyTypeCode(), d.type, owner + " type", s,
                   {DCM_SegmentedPropertyTypeCodeSequence}, patches),
          owner + " type");
    if (!d.description.empty())
      check(segment->setSegmentDescription(
                text({}, DCM_SegmentDescription, d.description, 64, "description", true).c_str()),
            owner + " description");
    double lab[3];
    IODCIELabUtil::rgb2DicomLab(lab[0], lab[1], lab[2], d.colour.red / 255.0, d.colour.green / 255.0,
                                d.colour.blue / 255.0);
    check(segment->setRecommendedDisplayCIELabValue(static_cast<Uint16>(std::lround(lab[0])),
                                                    static_cast<Uint16>(std::lround(lab[1])),
                                                    static_cast<Uint16>(std::lround(lab[2]))),
          owner + " colour");
    const std::string tracking_uid =
        !d.tracking_uid.empty() ? d.tracking_uid
                                : make_uid(seed.empty() ? "" : seed + "/seg/tracking/" + std::to_string(s + 1));
    check(segment->setTrackingID(
              text({}, DCM_TrackingID,
                   d.tracking_id.empty() ? d.label + " (segment " + std::to_string(s + 1) + ")" : d.tracking_id, 64,
                   "tracking identifier")
                  .c_str()),
          owner + " tracking identifier");
    check(segment->setTrackingUID(tracking_uid.c_str()), owner + " tracking UID '" + tracking_uid + "'");
    result.tracking_uids.push_back(tracking_uid);
    if (d.anatomic_region)
      check(set_code(segment->getGeneralAnatomyCode().getAnatomicRegion(), *d.anatomic_region,
                     owner + " anatomic region", s, {DCM_AnatomicRegionSequence}, patches),
            owner + " anatomic region");
    AlgorithmIdentificationMacro& identification = segment->getSegmentationAlgorithmIdentification();
    const std::vector<DcmTagKey> algorithm_item{DCM_SegmentationAlgorithmIdentificationSequence};
    check(set_code(identification.getAlgorithmFamilyCode(), d.algorithm.family, owner + " algorithm family", s,
                   {DCM_SegmentationAlgorithmIdentificationSequence, DCM_AlgorithmFamilyCodeSequence}, patches),
          owner + " algorithm family");
    check(identification.setAlgorithmName(
              text(algorithm_item, DCM_AlgorithmName, d.algorithm.name, 64, "algorithm name").c_str()),
          owner + " algorithm name");
    check(identification.setAlgorithmVersion(text(algorithm_item, DCM_AlgorithmVersion,
                                                  d.algorithm.version.empty() ? "unknown" : d.algorithm.version, 64,
                                                  "algorithm version")
                                                 .c_str()),
          owner + " algorithm version");
    if (!d.algorithm.parameters.empty())
      check(identification.setAlgorithmParameters(text(algorithm_item, DCM_AlgorithmParameters, d.algorithm.parameters,
                                                       10240, "algorithm parameters", true)
                                                      .c_str()),
            owner + " algorithm parameters");
    Uint16 number = 0;
    check(seg->addSegment(segment.get(), number), owner);
    segment.release();  // the segmentation owns it now
  }

  // Shared functional groups: one orientation and pixel measures for every frame.
  if (geometry) {
    const auto& o = *sources.orientation();
    std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
        format_ds(o[0]).c_str(), format_ds(o[1]).c_str(), format_ds(o[2]).c_str(), format_ds(o[3]).c_str(),
        format_ds(o[4]).c_str(), format_ds(o[5]).c_str()));
    if (!orientation) throw SegmentationError("cannot create the plane orientation functional group");
    check(seg->addForAllFrames(*orientation), "adding the plane orientation");
  }
  if (geometry) {
    FGPixelMeasures measures;
    check(measures.setPixelSpacing(format_ds_list(sources.pixel_spacing()->data(), 2).c_str()), "pixel spacing");
    // Slice Thickness is required with a frame of reference (dciodvfy); a source that does not
    // state it (or states 0) gets the distance between its slices, the depth each SEG frame
    // stands for.
    const auto spacing = sources.slice_spacing();
    if (sources.slice_thickness() && *sources.slice_thickness() > 0)
      check(measures.setSliceThickness(format_ds(*sources.slice_thickness()).c_str()), "slice thickness");
    else if (spacing)
      check(measures.setSliceThickness(format_ds(*spacing).c_str()), "slice thickness");
    if (spacing) check(measures.setSpacingBetweenSlices(format_ds(*spacing).c_str()), "spacing between slices");
    check(seg->addForAllFrames(measures), "adding the pixel measures");
  }

  // Dimensions (PS3.3 C.7.6.17): segment number, then position when frames are planes.
  const std::string dimension_uid = make_uid(seed.empty() ? "" : seed + "/seg/dimensions");
  check(seg->getDimensions().addDimensionIndex(DCM_ReferencedSegmentNumber, dimension_uid.c_str(),
                                               DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
        "adding the segment dimension");
  if (geometry)
    check(seg->getDimensions().addDimensionIndex(DCM_ImagePositionPatient, dimension_uid.c_str(),
                                                 DCM_PlanePositionSequence, "ImagePositionPatient"),
          "adding the position dimension");

  // DCMTK checks the modules only with at least one frame per segment: give it each segment's
  // first frame (with zero pixels); the per-frame groups and pixels are all replaced below.
  zero_frame.assign(pixels, 0);
  for (size_t s = 0; s < segments.size(); ++s) {
    const SegFrame& first = *std::find_if(seg_frames.begin(), seg_frames.end(),
                                          [&](const SegFrame& f) { return f.segment_number == s + 1; });
    const SourceFrame& source = sources.frame(first.source_frame);
    OFVector<FGBase*> groups;
    FGFrameContent frame_content;
    check(frame_content.setDimensionIndexValues(first.segment_number, 0), "dimension index");
    if (geometry)
      check(frame_content.setDimensionIndexValues(position_index[first.source_frame], 1), "dimension index");
    groups.push_back(&frame_content);
    std::unique_ptr<FGPlanePosPatient> position;
    if (geometry) {
      const auto& p = *source.position;
      position.reset(
          FGPlanePosPatient::createMinimal(format_ds(p[0]).c_str(), format_ds(p[1]).c_str(), format_ds(p[2]).c_str()));
      groups.push_back(position.get());
    }
    // The per-frame groups written below replace these, with the source's UIDs as they are: here
    // a UID that DCMTK would refuse (a leading zero) gets a stand-in.
    auto checked_uid = [](const std::string& uid) { return is_valid_uid(uid) ? uid : std::string(kStandInUid); };
    OFVector<ImageSOPInstanceReferenceMacro> references(1);
    check(references[0].setReferencedSOPClassUID(checked_uid(source.sop_class_uid).c_str()), "source SOP class");
    check(references[0].setReferencedSOPInstanceUID(checked_uid(source.sop_instance_uid).c_str()),
          "source SOP instance");
    std::unique_ptr<FGDerivationImage> derivation(DcmSegmentation::createDerivationImageFG(references, ""));
    if (!derivation) throw SegmentationError("cannot create the derivation image functional group");
    groups.push_back(derivation.get());
    check(seg->addFrame(zero_frame.data(), first.segment_number, groups),
          "adding the first frame of " + segment_name(s, segments[s]));
  }
  seg->setCheckFGOnWrite(OFFalse);
  seg->setCheckDimensionsOnWrite(OFFalse);

  result.file = std::make_unique<DcmFileFormat>();
  DcmDataset& dataset = *result.file->getDataset();
  check(seg->writeDataset(dataset), "writing the segmentation modules");
  patches.apply(dataset);
  // Type modifiers (a paired organ's side) belong within the type's item (PS3.3 Table 10-25),
  // where DCMTK 3.6.7's segment module does not put them: added here.
  for (size_t s = 0; s < segments.size(); ++s) {
    const auto& modifier = segments[s].description.type_modifier;
    if (!modifier) continue;
    DcmItem *segment = nullptr, *type = nullptr;
    if (dataset.findAndGetSequenceItem(DCM_SegmentSequence, segment, static_cast<long>(s)).bad() ||
        segment->findAndGetSequenceItem(DCM_SegmentedPropertyTypeCodeSequence, type).bad())
      throw SegmentationError("internal: the written " + segment_name(s, segments[s]) + " has no type item");
    const std::string what = segment_name(s, segments[s]) + " type modifier";
    insert_sequence_item(*type, DCM_SegmentedPropertyTypeModifierCodeSequence,
                         code_item({text_value(modifier->value, 16, what + " code value"),
                                    text_value(modifier->scheme, 16, what + " coding scheme"),
                                    text_value(modifier->meaning, 64, what + " code meaning")}));
  }
  for (const auto& [tag, uid] : taken_over.restore) {
    OFString written;
    if (dataset.findAndGetOFString(tag, written).good() && written == kStandInUid)
      check(dataset.putAndInsertString(tag, uid.c_str()), "restoring a source UID");
  }

  // ---- the parts written here -----------------------------------------------------------
  // Built in parallel (thousands of small items), appended in frame order.
  std::vector<std::unique_ptr<DcmItem>> frame_items(frame_count);
  parallel_for(frame_count, [&](size_t k) {
    const SegFrame& f = seg_frames[k];
    const SourceFrame& source = sources.frame(f.source_frame);
    auto item = std::make_unique<DcmItem>();
    // Derivation Image Macro (PS3.3 C.7.6.16.2.6) with the source frame.
    auto derivation_item = std::make_unique<DcmItem>();
    insert_sequence_item(*derivation_item, DCM_DerivationCodeSequence, code_item(kDerivationSegmentation));
    auto source_item = std::make_unique<DcmItem>();
    source_item->putAndInsertString(DCM_ReferencedSOPClassUID, source.sop_class_uid.c_str());
    source_item->putAndInsertString(DCM_ReferencedSOPInstanceUID, source.sop_instance_uid.c_str());
    if (source.frame_number > 0)
      source_item->putAndInsertString(DCM_ReferencedFrameNumber, std::to_string(source.frame_number).c_str());
    // Every mask has the source's Rows x Columns and is written onto the frame it was made
    // for, never resampled: each SEG pixel lies on its source pixel (highdicom and others
    // rely on this flag to look frames up by source image).
    source_item->putAndInsertString(DCM_SpatialLocationsPreserved, "YES");
    insert_sequence_item(*source_item, DCM_PurposeOfReferenceCodeSequence, code_item(kPurposeSourceImage));
    insert_sequence_item(*derivation_item, DCM_SourceImageSequence, source_item.release());
    insert_sequence_item(*item, DCM_DerivationImageSequence, derivation_item.release());
    // Frame Content Macro: the dimension index values (segment, position).
    auto content_item = std::make_unique<DcmItem>();
    const Uint32 index_values[2] = {f.segment_number, position_index[f.source_frame]};
    content_item->putAndInsertUint32Array(DCM_DimensionIndexValues, index_values, geometry ? 2 : 1);
    insert_sequence_item(*item, DCM_FrameContentSequence, content_item.release());
    // Plane Position (Patient) Macro: the source frame's position.
    if (geometry) {
      auto position_item = std::make_unique<DcmItem>();
      position_item->putAndInsertString(DCM_ImagePositionPatient, format_ds_list(source.position->data(), 3).c_str());
      insert_sequence_item(*item, DCM_PlanePositionSequence, position_item.release());
    }
    // Segmentation Macro: which segment this frame belongs to.
    auto segment_item = std::make_unique<DcmItem>();
    segment_item->putAndInsertUint16(DCM_ReferencedSegmentNumber, f.segment_number);
    insert_sequence_item(*item, DCM_SegmentIdentificationSequence, segment_item.release());
    frame_items[k] = std::move(item);
  });
  auto per_frame = std::make_unique<DcmSequenceOfItems>(DCM_PerFrameFunctionalGroupsSequence);
  for (auto& item : frame_items) per_frame->append(item.release());
  check(dataset.insert(per_frame.release(), true), "inserting the per-frame functional groups");
  check(dataset.putAndInsertString(DCM_NumberOfFrames, std::to_string(frame_count).c_str()), "Number of Frames");
  check(dataset.insert(pixel_data.release(), true), "inserting the pixel data");

  if (!geometry) {
    // Patient Orientation is type 2C when there is no plane orientation (General Image Module).
    OFString orientation;
    sources.dataset(0).findAndGetOFStringArray(DCM_PatientOrientation, orientation);
    check(dataset.putAndInsertString(DCM_PatientOrientation, orientation.c_str()), "Patient Orientation");
  }

  // Segments Overlap (0062,0013), for which DCMTK 3.6.7 has no setter.
  check(dataset.putAndInsertString(DCM_SegmentsOverlap, result.segments_overlap ? "YES" : "NO"), "Segments Overlap");

  // Referenced Series Sequence (Common Instance Reference Module): exactly the instances that
  // some frame references (OHIF needs it; dciodvfy warns about unreferenced ones).
  {
    std::vector<size_t> instances;
    for (const SegFrame& f : seg_frames) instances.push_back(sources.frame(f.source_frame).instance);
    std::sort(instances.begin(), instances.end());
    instances.erase(std::unique(instances.begin(), instances.end()), instances.end());
    auto series_item = std::make_unique<DcmItem>();
    series_item->putAndInsertString(DCM_SeriesInstanceUID, sources.series_instance_uid().c_str());
    auto referenced = std::make_unique<DcmSequenceOfItems>(DCM_ReferencedInstanceSequence);
    for (size_t instance : instances) {
      const SourceFrame* first = nullptr;
      for (const auto& f : sources.frames())
        if (f.instance == instance) {
          first = &f;
          break;
        }
      auto reference = std::make_unique<DcmItem>();
      reference->putAndInsertString(DCM_ReferencedSOPClassUID, first->sop_class_uid.c_str());
      reference->putAndInsertString(DCM_ReferencedSOPInstanceUID, first->sop_instance_uid.c_str());
      referenced->append(reference.release());
    }
    series_item->insert(referenced.release());
    auto series = std::make_unique<DcmSequenceOfItems>(DCM_ReferencedSeriesSequence);
    series->append(series_item.release());
    check(dataset.insert(series.release(), true), "Referenced Series Sequence");
  }
  result.number_of_frames = frame_count;
  return result;
}

}  // namespace unibiomed::seg
