#ifndef PKG01_L01_03_H
#define PKG01_L01_03_H
#include <string>
#include <vector>

namespace l01_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_03

#endif
