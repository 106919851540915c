#ifndef PKG01_L01_00_H
#define PKG01_L01_00_H
#include <string>
#include <vector>

namespace l01_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_00

#endif
