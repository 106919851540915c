#ifndef PKG01_L01_02_H
#define PKG01_L01_02_H
#include <string>
#include <vector>

namespace l01_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_02

#endif
