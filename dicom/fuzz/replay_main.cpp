// `fuzz_dicom_replay FILE...`: runs the fuzz target on files (regression corpus, crash
// reproduction) without libFuzzer. Prints one line per file; exit 0 unless a file crashes it.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    std::cout << "ok " << argv[i] << "\n";
  }
  return 0;
}
