#include "tools/cli.h"

int main(int argc, char** argv) { return slmops::cli::main(argc, argv); }
