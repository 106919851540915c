#ifndef PKG01_L01_08_H
#define PKG01_L01_08_H
#include <string>
#include <vector>

namespace l01_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_08

#endif
