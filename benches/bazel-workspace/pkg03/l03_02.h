#ifndef PKG03_L03_02_H
#define PKG03_L03_02_H
#include <string>
#include <vector>

namespace l03_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_02

#endif
