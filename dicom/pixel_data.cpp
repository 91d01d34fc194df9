// Frame decoding: DCMTK codecs frame by frame (DcmPixelData::getUncompressedFrame), GDCM's
// JPEG 2000 codec on the frame's fragments, then sample unpacking, Modality LUT, palette and
// YCbCr conversion done here so that every path ends in the same plain buffers.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/pixel_data.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <gdcmDataElement.h>
#include <gdcmFragment.h>
#include <gdcmJPEG2000Codec.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmSequenceOfFragments.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "dicom/internal/dcmtk_access.h"

namespace unibiomed::dicom {
namespace {

using internal::get_integer;
using internal::tag_name;

// DCMTK keeps its decoders in a process-wide registry; registering twice is harmless
// (each registration class guards itself), once per process is enough.
void register_dcmtk_decoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();  // YCbCr JPEG -> RGB per photometric interpretation
    DJLSDecoderRegistration::registerCodecs();
  });
}

bool is_jpeg2000(const std::string& ts) {
  return ts == "1.2.840.10008.1.2.4.90" || ts == "1.2.840.10008.1.2.4.91";
}

// One frame's samples after decompression, in the byte order of this machine.
struct RawFrame {
  std::vector<uint8_t> bytes;
  int rows = 0, columns = 0, samples = 1, bits_allocated = 8, bits_stored = 8;
  int pixel_representation = 0;
  int planar_configuration = 0;    // layout of `bytes`
  bool ybr422_subsampled = false;  // native YBR_FULL_422: Y1 Y2 Cb Cr per pixel pair
  std::string colour_model;
};

std::string frame_context(const Instance& instance, int frame_number) {
  return instance.source() + ": frame " + std::to_string(frame_number) + " of " + tag_name(DCM_PixelData);
}

// The fragments of one frame (PS3.5 A.4): DCMTK finds the first through the Basic Offset
// Table or the fragment count; the frame ends where the next one starts.
std::vector<std::pair<const uint8_t*, size_t>> frame_fragments(const Instance& instance, DcmPixelSequence* sequence,
                                                               int frame_number) {
  const int frames = instance.pixels().number_of_frames;
  Uint32 first = 0;
  OFCondition status = DcmCodec::determineStartFragment(Uint32(frame_number - 1), frames, sequence, first);
  if (status.bad())
    throw DicomError(frame_context(instance, frame_number) + ": cannot locate its fragments (" + status.text() + ")");
  Uint32 end = Uint32(sequence->card());
  if (frame_number < frames) {
    Uint32 next = 0;
    if (DcmCodec::determineStartFragment(Uint32(frame_number), frames, sequence, next).good() && next > first)
      end = next;
    else
      end = first + 1;
  }
  std::vector<std::pair<const uint8_t*, size_t>> fragments;
  for (Uint32 i = first; i < end; ++i) {
    DcmPixelItem* item = nullptr;
    Uint8* data = nullptr;
    if (sequence->getItem(item, i).bad() || !item || item->getUint8Array(data).bad()) {
      throw DicomError(frame_context(instance, frame_number) + ": fragment " + std::to_string(i) + " is unreadable");
    }
    fragments.emplace_back(data, size_t(item->getLength()));
  }
  return fragments;
}

void decode_jpeg2000(const Instance& instance, int frame_number, DcmPixelData* pixel_data, RawFrame& raw) {
  DcmPixelSequence* sequence = nullptr;
  const E_TransferSyntax xfer = instance.dataset()->getOriginalXfer();
  if (pixel_data->getEncapsulatedRepresentation(xfer, nullptr, sequence).bad() || !sequence) {
    throw DicomError(frame_context(instance, frame_number) + ": no encapsulated JPEG 2000 data");
  }
  const auto fragments = frame_fragments(instance, sequence, frame_number);

  const PixelLayout& p = instance.pixels();
  gdcm::JPEG2000Codec codec;
  codec.SetNumberOfDimensions(2);
  const unsigned int dims[3] = {unsigned(p.columns), unsigned(p.rows), 1};
  codec.SetDimensions(dims);
  codec.SetPixelFormat(gdcm::PixelFormat(uint16_t(p.samples_per_pixel), uint16_t(p.bits_allocated),
                                         uint16_t(p.bits_stored), uint16_t(p.high_bit),
                                         uint16_t(p.pixel_representation)));
  codec.SetPhotometricInterpretation(gdcm::PhotometricInterpretation(
      gdcm::PhotometricInterpretation::GetPIType(p.photometric_interpretation.c_str())));
  codec.SetPlanarConfiguration(0);
  gdcm::SmartPointer<gdcm::SequenceOfFragments> gdcm_fragments = new gdcm::SequenceOfFragments;
  for (const auto& [data, length] : fragments) {
    gdcm::Fragment fragment;
    fragment.SetByteValue(reinterpret_cast<const char*>(data), uint32_t(length));
    gdcm_fragments->AddFragment(fragment);
  }
  gdcm::DataElement in(gdcm::Tag(0x7fe0, 0x0010));
  in.SetValue(*gdcm_fragments);
  gdcm::DataElement out;
  if (!codec.Decode(in, out) || !out.GetByteValue()) {
    throw DicomError(frame_context(instance, frame_number) +
                     ": the JPEG 2000 codestream cannot be decoded (GDCM/OpenJPEG)");
  }
  const gdcm::ByteValue* value = out.GetByteValue();
  const size_t expected = raw.bytes.size();
  if (value->GetLength() < expected) {
    throw DicomError(frame_context(instance, frame_number) + ": JPEG 2000 decoder gave " +
                     std::to_string(value->GetLength()) + " bytes, " + std::to_string(expected) + " expected");
  }
  std::memcpy(raw.bytes.data(), value->GetPointer(), expected);
  // When the codestream's signedness contradicts Pixel Representation (a known encoder bug),
  // the dataset wins, as in pydicom: the samples are masked to Bits Stored and sign-extended
  // per Pixel Representation (pydicom's J2K_pixelrep_mismatch.dcm then gives plausible HU).
  // OpenJPEG applies the inverse multi-component transform itself (ISO 15444-1 Annex G).
  const std::string& pi = p.photometric_interpretation;
  raw.colour_model = (pi == "YBR_ICT" || pi == "YBR_RCT") ? "RGB" : pi;
}

RawFrame decode_raw_frame(const Instance& instance, int frame_number) {
  if (std::string problem = instance.image_problem(); !problem.empty()) throw DicomError(problem);
  instance.frame(frame_number);  // range check with a clear message
  const PixelLayout& p = instance.pixels();
  RawFrame raw;
  raw.rows = p.rows;
  raw.columns = p.columns;
  raw.samples = p.samples_per_pixel;
  raw.bits_allocated = p.bits_allocated;
  raw.bits_stored = p.bits_stored;
  raw.pixel_representation = p.pixel_representation;
  raw.planar_configuration = p.samples_per_pixel > 1 ? p.planar_configuration : 0;
  raw.colour_model = p.photometric_interpretation;

  DcmDataset* ds = instance.dataset();
  DcmElement* element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, element).bad() || !element) {
    throw DicomError(instance.source() + ": no " + tag_name(DCM_PixelData));
  }
  auto* pixel_data = dynamic_cast<DcmPixelData*>(element);
  if (!pixel_data) throw DicomError(instance.source() + ": " + tag_name(DCM_PixelData) + " has an unexpected VR");

  const size_t bytes_per_sample = size_t(p.bits_allocated / 8);
  const size_t full_frame = size_t(p.rows) * size_t(p.columns) * size_t(p.samples_per_pixel) * bytes_per_sample;

  if (!p.encapsulated) {
    // Native: read exactly this frame's bytes (from the file when not loaded), swapped to
    // this machine's byte order. YBR_FULL_422 stores two samples per pixel (PS3.3 C.7.6.3.1.2).
    raw.ybr422_subsampled = p.photometric_interpretation == "YBR_FULL_422";
    const size_t frame_size = raw.ybr422_subsampled ? full_frame * 2 / 3 : full_frame;
    raw.bytes.resize(frame_size + 1);
    const unsigned long long offset = (unsigned long long)(frame_number - 1) * frame_size;
    if (offset + frame_size > 0xFFFFFFFFull) {
      throw DicomError(frame_context(instance, frame_number) + ": native pixel data beyond 4 GiB is not supported");
    }
    OFCondition status =
        element->getPartialValue(raw.bytes.data(), Uint32(offset), Uint32(frame_size), nullptr, gLocalByteOrder);
    if (status.bad()) throw DicomError(frame_context(instance, frame_number) + ": cannot read (" + status.text() + ")");
    raw.bytes.resize(frame_size);
    if (p.bits_allocated == 32 && element->getVR() == EVR_OW && DcmXfer(ds->getOriginalXfer()).isBigEndian()) {
      // DCMTK swapped 16-bit words (OW); 32-bit samples also need their halves exchanged.
      for (size_t i = 0; i + 3 < raw.bytes.size(); i += 4) {
        std::swap(raw.bytes[i], raw.bytes[i + 2]);
        std::swap(raw.bytes[i + 1], raw.bytes[i + 3]);
      }
    }
    // Values read lazily from a file are dropped again so that a long series is not held in memory.
    element->compact();
    return raw;
  }

  raw.bytes.resize(full_frame + 1);  // DCMTK wants room for a pad byte
  if (is_jpeg2000(instance.transfer_syntax_uid())) {
    raw.bytes.resize(full_frame);
    decode_jpeg2000(instance, frame_number, pixel_data, raw);
    return raw;
  }
  register_dcmtk_decoders();
  Uint32 start_fragment = 0;
  OFString colour_model;
  OFCondition status = pixel_data->getUncompressedFrame(ds, Uint32(frame_number - 1), start_fragment, raw.bytes.data(),
                                                        Uint32(raw.bytes.size()), colour_model, nullptr);
  if (status.bad()) {
    throw DicomError(frame_context(instance, frame_number) + ": cannot decode " +
                     transfer_syntax_name(instance.transfer_syntax_uid()) + " (" + status.text() + ")");
  }
  raw.bytes.resize(full_frame);
  if (!colour_model.empty()) raw.colour_model = colour_model.c_str();
  return raw;
}

// Stored values, colour-by-pixel, masked to Bits Stored and sign-extended.
template <typename Word>
void unpack_samples(const RawFrame& raw, std::vector<int32_t>& out) {
  const size_t pixels = size_t(raw.rows) * size_t(raw.columns);
  const size_t n = pixels * size_t(raw.samples);
  out.resize(n);
  const Word* words = reinterpret_cast<const Word*>(raw.bytes.data());
  const uint32_t mask = raw.bits_stored >= 32 ? 0xFFFFFFFFu : ((1u << raw.bits_stored) - 1u);
  const uint32_t sign_bit = raw.bits_stored >= 32 ? 0x80000000u : (1u << (raw.bits_stored - 1));
  auto convert = [&](Word w) -> int32_t {
    uint32_t v = uint32_t(w) & mask;
    if (raw.pixel_representation == 1 && (v & sign_bit)) return int32_t(int64_t(v) - (int64_t(mask) + 1));
    return int32_t(v);
  };
  if (raw.ybr422_subsampled) {
    // Y1 Y2 Cb Cr for each horizontal pixel pair, rows of even width.
    for (int y = 0; y < raw.rows; ++y) {
      const Word* in = words + size_t(y) * size_t(raw.columns) * 2;
      int32_t* o = out.data() + size_t(y) * size_t(raw.columns) * 3;
      for (int x = 0; x + 1 < raw.columns; x += 2, in += 4, o += 6) {
        o[0] = convert(in[0]);
        o[1] = convert(in[2]);
        o[2] = convert(in[3]);
        o[3] = convert(in[1]);
        o[4] = convert(in[2]);
        o[5] = convert(in[3]);
      }
    }
    return;
  }
  if (raw.samples > 1 && raw.planar_configuration == 1) {
    for (size_t i = 0; i < pixels; ++i)
      for (int s = 0; s < raw.samples; ++s)
        out[i * size_t(raw.samples) + size_t(s)] = convert(words[size_t(s) * pixels + i]);
    return;
  }
  for (size_t i = 0; i < n; ++i) out[i] = convert(words[i]);
}

void unpack(const RawFrame& raw, std::vector<int32_t>& out) {
  switch (raw.bits_allocated) {
    case 8:
      unpack_samples<uint8_t>(raw, out);
      break;
    case 16:
      unpack_samples<uint16_t>(raw, out);
      break;
    default:
      unpack_samples<uint32_t>(raw, out);
      break;
  }
}

// A lookup table (Modality LUT, palette colour): descriptor (entries, first mapped, bits) and
// data (PS3.3 C.11.1.1.1, C.7.6.3.1.5).
struct LookupTable {
  long first_mapped = 0;
  int bits = 16;
  std::vector<uint16_t> entries;
  uint16_t operator()(int32_t v) const {
    long i = long(v) - first_mapped;
    i = std::clamp(i, 0L, long(entries.size()) - 1);
    return entries[size_t(i)];
  }
};

LookupTable read_lut(const Instance& instance, DcmItem* item, const DcmTagKey& descriptor_tag,
                     const DcmTagKey& data_tag) {
  LookupTable lut;
  auto entries = get_integer(item, descriptor_tag, 0);
  auto first = get_integer(item, descriptor_tag, 1);
  auto bits = get_integer(item, descriptor_tag, 2);
  if (!entries || !first || !bits) {
    throw DicomError(instance.source() + ": " + tag_name(descriptor_tag) + " is missing or does not hold 3 values");
  }
  // 0 entries means 2^16 (PS3.3 C.7.6.3.1.5). The first mapped value is US or SS depending on
  // Pixel Representation; DCMTK may hand an SS back as a large unsigned number.
  const size_t count = *entries == 0 ? 65536 : size_t(uint16_t(*entries));
  lut.first_mapped =
      instance.pixels().pixel_representation == 1 ? long(int16_t(uint16_t(*first))) : long(uint16_t(*first));
  lut.bits = int(*bits);
  const Uint16* data = nullptr;
  unsigned long length = 0;
  if (item->findAndGetUint16Array(data_tag, data, &length).bad() || !data) {
    throw DicomError(instance.source() + ": " + tag_name(data_tag) + " is missing");
  }
  if (lut.bits <= 8 && length * 2 >= count && length < count) {
    // 8-bit entries packed two per 16-bit word.
    lut.entries.resize(count);
    for (size_t i = 0; i < count; ++i) lut.entries[i] = uint16_t((data[i / 2] >> ((i % 2) * 8)) & 0xFF);
  } else if (length >= count) {
    lut.entries.assign(data, data + count);
  } else {
    throw DicomError(instance.source() + ": " + tag_name(data_tag) + " holds " + std::to_string(length) + " entries, " +
                     tag_name(descriptor_tag) + " announces " + std::to_string(count));
  }
  return lut;
}

uint8_t to_byte(double v) {
  return uint8_t(std::clamp(std::lround(v), 0L, 255L));
}

}  // namespace

bool is_colour(const Instance& instance) {
  const auto& p = instance.pixels();
  return p.samples_per_pixel == 3 || p.photometric_interpretation == "PALETTE COLOR";
}

StoredFrame decode_stored_frame(const Instance& instance, int frame_number) {
  RawFrame raw = decode_raw_frame(instance, frame_number);
  StoredFrame frame;
  frame.rows = raw.rows;
  frame.columns = raw.columns;
  frame.samples_per_pixel = raw.samples;
  frame.colour_model = raw.colour_model == "YBR_FULL_422" && raw.ybr422_subsampled ? "YBR_FULL" : raw.colour_model;
  unpack(raw, frame.values);
  return frame;
}

ModalityFrame decode_modality_frame(const Instance& instance, int frame_number) {
  if (is_colour(instance)) {
    throw DicomError(instance.source() + ": " + tag_name(DCM_PhotometricInterpretation) + " " +
                     instance.pixels().photometric_interpretation + " is colour, not greyscale");
  }
  RawFrame raw = decode_raw_frame(instance, frame_number);
  std::vector<int32_t> stored;
  unpack(raw, stored);
  ModalityFrame frame;
  frame.rows = raw.rows;
  frame.columns = raw.columns;
  frame.monochrome1 = instance.pixels().photometric_interpretation == "MONOCHROME1";
  frame.values.resize(stored.size());
  const FrameInfo& info = instance.frame(frame_number);
  DcmDataset* ds = instance.dataset();
  DcmItem* modality_lut =
      instance.pixels().has_modality_lut_sequence ? internal::first_item(ds, DCM_ModalityLUTSequence) : nullptr;
  if (modality_lut && !ds->tagExists(DCM_RescaleSlope)) {
    // A Modality LUT Sequence replaces rescaling (PS3.3 C.11.1: one or the other).
    LookupTable lut = read_lut(instance, modality_lut, DCM_LUTDescriptor, DCM_LUTData);
    for (size_t i = 0; i < stored.size(); ++i) frame.values[i] = float(lut(stored[i]));
  } else {
    const double slope = info.rescale_slope, intercept = info.rescale_intercept;
    const bool unsigned32 = raw.pixel_representation == 0 && raw.bits_stored == 32;
    for (size_t i = 0; i < stored.size(); ++i) {
      const double v = unsigned32 ? double(uint32_t(stored[i])) : double(stored[i]);
      frame.values[i] = float(v * slope + intercept);
    }
  }
  return frame;
}

RgbImage decode_colour_frame(const Instance& instance, int frame_number) {
  if (!is_colour(instance)) {
    throw DicomError(instance.source() + ": " + tag_name(DCM_PhotometricInterpretation) + " " +
                     instance.pixels().photometric_interpretation + " is greyscale, not colour");
  }
  StoredFrame stored = decode_stored_frame(instance, frame_number);
  RgbImage image{stored.columns, stored.rows, {}};
  const size_t pixels = size_t(stored.rows) * size_t(stored.columns);
  image.rgb.resize(pixels * 3);
  const std::string& model = stored.colour_model;
  if (model == "PALETTE COLOR") {
    DcmDataset* ds = instance.dataset();
    if (ds->tagExists(DCM_SegmentedRedPaletteColorLookupTableData)) {
      throw DicomError(instance.source() + ": segmented palette colour lookup tables (" +
                       tag_name(DCM_SegmentedRedPaletteColorLookupTableData) + ") are not supported");
    }
    const LookupTable red =
        read_lut(instance, ds, DCM_RedPaletteColorLookupTableDescriptor, DCM_RedPaletteColorLookupTableData);
    const LookupTable green =
        read_lut(instance, ds, DCM_GreenPaletteColorLookupTableDescriptor, DCM_GreenPaletteColorLookupTableData);
    const LookupTable blue =
        read_lut(instance, ds, DCM_BluePaletteColorLookupTableDescriptor, DCM_BluePaletteColorLookupTableData);
    // 16-bit entries keep their high byte; 8-bit entries are used as they are.
    auto byte = [](const LookupTable& lut, int32_t v) { return uint8_t(lut.bits > 8 ? lut(v) >> 8 : lut(v) & 0xFF); };
    for (size_t i = 0; i < pixels; ++i) {
      image.rgb[3 * i] = byte(red, stored.values[i]);
      image.rgb[3 * i + 1] = byte(green, stored.values[i]);
      image.rgb[3 * i + 2] = byte(blue, stored.values[i]);
    }
    return image;
  }
  const int bits = instance.pixels().bits_stored;
  const int shift = bits > 8 ? bits - 8 : 0;
  // Colour samples are unsigned (PS3.3 C.7.6.3.1.1 allows nothing else for RGB/YBR).
  auto sample8 = [&](size_t i) { return int(uint32_t(stored.values[i]) >> shift); };
  if (model == "RGB") {
    for (size_t i = 0; i < pixels * 3; ++i) image.rgb[i] = uint8_t(std::clamp(sample8(i), 0, 255));
    return image;
  }
  if (model == "YBR_FULL" || model == "YBR_FULL_422") {
    // PS3.3 C.7.6.3.1.2 (YBR_FULL): R = Y + 1.402 (Cr - 128), G = Y - 0.344136 (Cb - 128)
    // - 0.714136 (Cr - 128), B = Y + 1.772 (Cb - 128), on samples scaled to 8 bits.
    for (size_t i = 0; i < pixels; ++i) {
      const double y = sample8(3 * i);
      const double cb = double(sample8(3 * i + 1)) - 128.0;
      const double cr = double(sample8(3 * i + 2)) - 128.0;
      image.rgb[3 * i] = to_byte(y + 1.402 * cr);
      image.rgb[3 * i + 1] = to_byte(y - 0.344136 * cb - 0.714136 * cr);
      image.rgb[3 * i + 2] = to_byte(y + 1.772 * cb);
    }
    return image;
  }
  throw DicomError(instance.source() + ": colour model " + model + " of the decoded pixels is not supported");
}

}  // namespace unibiomed::dicom
