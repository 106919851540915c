#ifndef PKG01_L01_05_H
#define PKG01_L01_05_H
#include <string>
#include <vector>

namespace l01_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_05

#endif
