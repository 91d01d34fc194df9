// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/support/validators.h"

#include <regex>
#include <sstream>

#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// The first lines of a program's output, for messages.
std::string head_of(const std::string& text, size_t max_lines = 5) {
  std::string head;
  const auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size() && i < max_lines; ++i) head += (i ? " | " : "") + lines[i];
  return head.empty() ? "no output" : "output: " + head;
}

// run_command reports 127 when exec failed (the program is missing), 126 when it is not
// executable, 128+signal when it was killed.
bool could_not_run(int exit_code) { return exit_code == 126 || exit_code == 127 || exit_code >= 128; }

}  // namespace

std::vector<std::string> dciodvfy_errors(const fs::path& file, std::string* output) {
  if (output) output->clear();
  if (!have_program("dciodvfy"))
    return {"dciodvfy did not run: " + install_hint("dciodvfy", "Debian's dicom3tools package")};
  const auto result = run_command({"dciodvfy", file.string()});
  if (output) *output = result.output;
  if (could_not_run(result.exit_code))
    return {"dciodvfy did not run: exit " + std::to_string(result.exit_code) + ", " + head_of(result.output)};
  // A check prints the name of the IOD it recognised (e.g. "Segmentation", "EnhancedSR") on a line
  // of its own, and its findings as "Error - ...", "Warning - ..." lines; "Abort - ..." means it
  // stopped (e.g. the file could not be opened).
  static const std::regex iod_name("^[A-Za-z][A-Za-z0-9]*$");
  std::vector<std::string> errors;
  bool named_iod = false;
  for (const auto& line : lines_of(result.output)) {
    if (line.rfind("Error", 0) == 0 || line.rfind("Abort", 0) == 0) errors.push_back(line);
    if (std::regex_match(line, iod_name)) named_iod = true;
  }
  if (!named_iod)
    errors.insert(errors.begin(), "dciodvfy did not check " + file.string() + ": it named no IOD (exit " +
                                      std::to_string(result.exit_code) + ", " + head_of(result.output) + ")");
  else if (errors.empty() && result.exit_code != 0)
    errors.push_back("dciodvfy exited with " + std::to_string(result.exit_code) + " without an error line");
  return errors;
}

fs::path pixelmed_jar() { return "/usr/share/java/pixelmed.jar"; }

std::vector<std::string> pixelmed_sr_errors(const fs::path& file, std::string* output) {
  if (output) output->clear();
  if (!have_program("java"))
    return {"pixelmed did not run: " + install_hint("java", "Debian's default-jre-headless package")};
  if (!fs::exists(pixelmed_jar()))
    return {"pixelmed did not run: " + install_hint(pixelmed_jar().string(), "Debian's pixelmed-apps package")};
  // Current JDKs stop pixelmed's template XPath expressions (JAXP0801003) unless these limits are
  // lifted; C1-only JIT and the serial collector halve the CPU time of this short-lived JVM.
  const auto result = run_command({"java", "-Xmx6g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                                   "-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                                   "-Djdk.xml.xpathTotalOpLimit=0", "-cp", pixelmed_jar().string(),
                                   "com.pixelmed.validate.DicomSRValidator", file.string()});
  if (output) *output = result.output;
  if (could_not_run(result.exit_code))
    return {"pixelmed did not run: exit " + std::to_string(result.exit_code) + ", " + head_of(result.output)};
  // A real check starts with "Found <IOD name> IOD" and ends with "IOD validation complete".
  // An unreadable file prints a Java exception (exit status 0); a file that is not an SR prints
  // "IOD (SOP Class) unrecognized" (exit status 0 too).
  std::vector<std::string> errors;
  bool found_iod = false, completed = false;
  for (const auto& line : lines_of(result.output)) {
    if (line.rfind("Found ", 0) == 0 && line.size() > 10 && line.compare(line.size() - 4, 4, " IOD") == 0)
      found_iod = true;
    if (line == "IOD validation complete") completed = true;
    if (line.find("Error") != std::string::npos || line.find("Exception") != std::string::npos ||
        line.find("unrecognized") != std::string::npos)
      errors.push_back(line);
  }
  if (!found_iod || !completed)
    errors.insert(errors.begin(), "pixelmed did not check " + file.string() + ": " +
                                      (found_iod ? "no \"IOD validation complete\"" : "no \"Found ... IOD\" line") +
                                      " (exit " + std::to_string(result.exit_code) + ", " + head_of(result.output) + ")");
  else if (result.exit_code != 0)
    errors.push_back("pixelmed exited with " + std::to_string(result.exit_code));
  return errors;
}

}  // namespace unibiomed::test
