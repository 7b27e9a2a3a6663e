// The main of a fuzz target when it is not built with libFuzzer (the normal and sanitizer
// builds): runs LLVMFuzzerTestOneInput once on every file named on the command line or found
// (recursively) in the folders named there, in sorted order. A finding aborts the process
// (the sanitizers and fuzz_util.h's rules do that), so the test fails and names the file last
// printed. Usage: fuzz_<target> [-v] FILE_OR_FOLDER...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  bool verbose = false;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-v") {
      verbose = true;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;  // libFuzzer flags (-runs=0 ...) are ignored
    std::error_code ec;
    if (fs::is_directory(a, ec)) {
      for (auto& e : fs::recursive_directory_iterator(a, ec))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(a, ec)) {
      files.push_back(a);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or folder\n", a.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "replay: no inputs\n");
    return 2;
  }
  for (auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Printed before the run: when the input aborts the process, the last line names it.
    if (verbose) std::fprintf(stderr, "replay: %s (%zu bytes)\n", f.c_str(), bytes.size());
    else std::fprintf(stderr, "\rreplay: %s", f.filename().c_str()), std::fflush(stderr);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::fprintf(stderr, "\nreplay: %zu inputs, no finding\n", files.size());
  return 0;
}
