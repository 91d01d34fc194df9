// The one error type that leaves dicom/: unreadable files, missing or invalid attributes,
// undecodable pixel data, inconsistent series. The message always names the culprit: the file
// (or the host's instance id), and the attribute as "Name (gggg,eeee)" where one is involved.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <stdexcept>
#include <string>

namespace unibiomed::dicom {

class DicomError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace unibiomed::dicom
