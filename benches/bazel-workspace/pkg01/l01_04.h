#ifndef PKG01_L01_04_H
#define PKG01_L01_04_H
#include <string>
#include <vector>

namespace l01_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l01_04

#endif
