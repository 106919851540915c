#ifndef PKG01_L01_06_H
#define PKG01_L01_06_H
#include <string>
#include <vector>

namespace l01_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_06

#endif
