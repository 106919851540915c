#ifndef PKG01_L01_01_H
#define PKG01_L01_01_H
#include <string>
#include <vector>

namespace l01_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_01

#endif
