#ifndef PKG07_L07_01_H
#define PKG07_L07_01_H
#include <string>
#include <vector>

namespace l07_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_01

#endif
