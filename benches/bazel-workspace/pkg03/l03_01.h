#ifndef PKG03_L03_01_H
#define PKG03_L03_01_H
#include <string>
#include <vector>

namespace l03_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_01

#endif
