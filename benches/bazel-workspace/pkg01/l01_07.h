#ifndef PKG01_L01_07_H
#define PKG01_L01_07_H
#include <string>
#include <vector>

namespace l01_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_07

#endif
