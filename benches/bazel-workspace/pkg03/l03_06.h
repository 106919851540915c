#ifndef PKG03_L03_06_H
#define PKG03_L03_06_H
#include <string>
#include <vector>

namespace l03_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_06

#endif
