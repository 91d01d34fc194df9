// Writing results: a SEG of 10 segments over 300 frames of 512x512 (every frame non-empty: the
// worst case, 3000 SEG frames, 98 MB of packed pixels from 786 MB of byte masks) and its SR,
// against the time to write the same number of bytes with a plain buffered write, measured in
// the same run. Prints times (median of --runs after --warmup untimed runs), the ratio and the
// peak memory added while writing.
//   build/bench/bench_writers [--frames N] [--segments N] [--size N] [--runs N] [--warmup N] [--help]
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "seg-writer/dicom_uid.h"
#include "seg-writer/part10_file.h"
#include "seg-writer/segmentation_writer.h"
#include "sr-writer/finding_geometry.h"
#include "sr-writer/measurement_report.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Resident set size and its peak (VmRSS, VmHWM) in MiB; the peak can be reset (Linux >= 4.0).
double status_mib(const char* key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::strlen(key))) / 1024.0;
  return 0;
}
void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

// CT-like slice headers (no pixel data: the writers read identity and geometry only).
std::vector<std::unique_ptr<DcmFileFormat>> make_sources(unsigned frames, unsigned size) {
  std::vector<std::unique_ptr<DcmFileFormat>> files;
  const std::string study = unibiomed::seg::make_uid("bench/study"), series = unibiomed::seg::make_uid("bench/series"),
                    frame_of_reference = unibiomed::seg::make_uid("bench/for");
  for (unsigned k = 0; k < frames; ++k) {
    auto file = std::make_unique<DcmFileFormat>();
    DcmDataset& ds = *file->getDataset();
    ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds.putAndInsertString(DCM_SOPInstanceUID, unibiomed::seg::make_uid("bench/instance/" + std::to_string(k)).c_str());
    ds.putAndInsertString(DCM_StudyInstanceUID, study.c_str());
    ds.putAndInsertString(DCM_SeriesInstanceUID, series.c_str());
    ds.putAndInsertString(DCM_FrameOfReferenceUID, frame_of_reference.c_str());
    ds.putAndInsertString(DCM_PatientName, "Bench^Patient");
    ds.putAndInsertString(DCM_PatientID, "BENCH");
    ds.putAndInsertString(DCM_Modality, "CT");
    ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(size));
    ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(size));
    ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
    ds.putAndInsertString(DCM_ImagePositionPatient, ("-200\\-200\\" + std::to_string(k * 1.25)).c_str());
    ds.putAndInsertString(DCM_PixelSpacing, "0.78\\0.78");
    ds.putAndInsertString(DCM_SliceThickness, "1.25");
    files.push_back(std::move(file));
  }
  return files;
}

struct Args {
  unsigned frames = 300, segments = 10, size = 512, runs = 3, warmup = 1;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  unibiomed::bench::CommandLine cl(
      "bench_writers",
      "Writing a SEG (every frame non-empty: the worst case) and its SR against a plain buffered write of the\n"
      "same bytes in the same run: medians, the ratio writers / plain write (target <= 3), the peak memory added.");
  cl.option("--frames", "N", "source frames", a.frames)
      .option("--segments", "N", "segments (each non-empty on every frame)", a.segments)
      .option("--size", "N", "rows and columns of a frame", a.size)
      .option("--runs", "N", "timed runs (median)", a.runs)
      .option("--warmup", "N", "untimed runs before them", a.warmup);
  cl.parse(argc, argv);
  if (a.frames < 1 || a.segments < 1 || a.size < 8 || a.runs < 1)
    cl.fail("--frames, --segments and --runs must be at least 1, --size at least 8");
  const fs::path dir = fs::temp_directory_path() / ("unibiomed-bench-writers-" + std::to_string(::getpid()));
  fs::create_directories(dir);

  auto files = make_sources(a.frames, a.size);
  std::vector<DcmDataset*> datasets;
  for (auto& f : files) datasets.push_back(f->getDataset());
  const unibiomed::seg::SourceImages sources(datasets);

  // Masks: per segment an ellipsoid-like blob whose radius varies along the slices (non-empty everywhere).
  std::vector<unibiomed::seg::Segment> segments(a.segments);
  const size_t pixels = static_cast<size_t>(a.size) * a.size;
  for (unsigned s = 0; s < a.segments; ++s) {
    auto& segment = segments[s];
    segment.description.label = "Finding " + std::to_string(s + 1);
    segment.description.algorithm.version = "bench";
    const double cx = a.size * (0.2 + 0.6 * ((s % 4) / 3.0)), cy = a.size * (0.2 + 0.6 * ((s / 4) / 2.0));
    for (unsigned f = 0; f < a.frames; ++f) {
      unibiomed::seg::FrameMask mask;
      mask.frame = f;
      mask.binary.assign(pixels, 0);
      const double r = a.size * (0.05 + 0.05 * std::sin(3.14159 * f / a.frames));
      for (unsigned y = 0; y < a.size; ++y)
        for (unsigned x = 0; x < a.size; ++x)
          if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) mask.binary[static_cast<size_t>(y) * a.size + x] = 1;
      segment.masks.push_back(std::move(mask));
    }
  }
  std::printf("bench_writers: SEG of %u segments x %u frames of %ux%u (%.0f MB of byte masks in), and its SR\n",
              a.segments, a.frames, a.size, a.size, a.segments * a.frames * pixels / 1e6);

  std::vector<double> builds, seg_saves, geometries, srs, totals, plains;
  double peak_added = 0;
  size_t seg_bytes = 0, sr_bytes = 0, seg_frames = 0;
  for (unsigned run = 0; run < a.warmup + a.runs; ++run) {
    const double rss_before = status_mib("VmRSS:");
    reset_peak();
    const auto start = Clock::now();
    unibiomed::seg::SegmentationOptions options;
    options.uid_seed = "bench";
    auto seg = unibiomed::seg::write_segmentation(sources, segments, options);
    const double build = seconds_since(start);
    const auto save_start = Clock::now();
    unibiomed::seg::save_part10(*seg->file, dir / "seg.dcm");
    const double seg_save = seconds_since(save_start);

    const auto geometry_start = Clock::now();
    unibiomed::sr::SeriesFindings findings{&sources, seg->file->getDataset(), {}};
    for (unsigned s = 0; s < a.segments; ++s) {
      unibiomed::sr::ReportedFinding f;
      f.tracking_uid = seg->tracking_uids[s];
      f.finding = segments[s].description.type;
      f.text = "Finding " + std::to_string(s + 1) + " as the model describes it.";
      f.measurements = unibiomed::sr::segment_measurements(segments[s], sources);
      f.segment_number = static_cast<std::uint16_t>(s + 1);
      f.region = unibiomed::sr::key_region(segments[s], sources);
      findings.findings.push_back(std::move(f));
    }
    const double geometry = seconds_since(geometry_start);
    const auto sr_start = Clock::now();
    auto report = unibiomed::sr::write_measurement_report({findings}, {});
    unibiomed::seg::save_part10(*report->file, dir / "sr.dcm");
    const double sr = seconds_since(sr_start);
    peak_added = std::max(peak_added, status_mib("VmHWM:") - rss_before);
    seg_frames = seg->number_of_frames;
    seg.reset();
    report.reset();
    seg_bytes = fs::file_size(dir / "seg.dcm");
    sr_bytes = fs::file_size(dir / "sr.dcm");

    // The floor: the same number of bytes through a plain buffered write (stdio, 1 MiB buffer).
    std::vector<char> bytes(seg_bytes + sr_bytes, 1);
    const auto plain_start = Clock::now();
    {
      std::FILE* out = std::fopen((dir / "plain.bin").c_str(), "wb");
      std::vector<char> buffer(1 << 20);
      std::setvbuf(out, buffer.data(), _IOFBF, buffer.size());
      std::fwrite(bytes.data(), 1, bytes.size(), out);
      std::fclose(out);
    }
    const double plain = seconds_since(plain_start);

    const bool timed = run >= a.warmup;
    if (timed) {
      builds.push_back(build);
      seg_saves.push_back(seg_save);
      geometries.push_back(geometry);
      srs.push_back(sr);
      totals.push_back(build + seg_save + sr);
      plains.push_back(plain);
    }
    std::printf(
        "  run %u%s: SEG build %.3f s + save %.3f s, SR %.3f s (outlines/measurements %.3f s); plain write %.3f s\n",
        run + 1, timed ? "" : " (warm-up)", build, seg_save, sr, geometry, plain);
  }
  using unibiomed::bench::median;
  const double med_build = median(builds), med_seg_save = median(seg_saves), med_geometry = median(geometries),
               med_sr = median(srs), med_total = median(totals), med_plain = median(plains);
  fs::remove_all(dir);
  std::printf("SEG: %zu frames, %.1f MB; SR: %.1f kB\n", seg_frames, seg_bytes / 1e6, sr_bytes / 1e3);
  std::printf(
      "median of %u after %u warm-up: SEG build %.3f s, SEG save %.3f s, SR build+save %.3f s => writers %.3f s "
      "(%.0f MB/s)\n",
      a.runs, a.warmup, med_build, med_seg_save, med_sr, med_total, (seg_bytes + sr_bytes) / 1e6 / med_total);
  std::printf("plain buffered write of the same %.1f MB: %.3f s (%.0f MB/s)\n", (seg_bytes + sr_bytes) / 1e6,
              med_plain, (seg_bytes + sr_bytes) / 1e6 / med_plain);
  std::printf("ratio writers / plain write: %.2f (target <= 3)\n", med_total / med_plain);
  std::printf("outlines and measurements of the findings (not part of writing): %.3f s\n", med_geometry);
  std::printf("peak memory added while writing: %.0f MiB (input masks held by the caller: %.0f MiB)\n", peak_added,
              a.segments * a.frames * pixels / 1048576.0);
  return 0;
}
